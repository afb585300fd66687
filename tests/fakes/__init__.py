"""In-memory fakes of the services' ports (bridge/services/ports), for fast unit tests.

Each fake keeps its state in plain attributes that tests assert on (what the registry
holds, what the audit log says), not on calls. tests/contract runs the same tests on a
fake and on its real adapter, so the two cannot drift apart unnoticed.
"""
