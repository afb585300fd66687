"""In-memory fakes of the services' ports (bridge/services/ports), for fast unit tests.

Each fake keeps its state in plain attributes that tests assert on (what the registry
holds, what the audit log says), not on calls. tests/contract runs the same tests on a
fake and on its real adapter, so the two cannot drift apart unnoticed.

messages.py stands in for the broker's side instead (a delivery, an exchange, the
consumers' database gate), for the unit tests of the consumers and the recorder.
"""
