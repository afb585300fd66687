"""In-memory stand-ins for fast tests of the consumers, the recorder and the worker."""
