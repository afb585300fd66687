"""What the services need from the world, as the services name it (typing.Protocol).

Adapters (bridge/adapters) implement these ports; the fakes in tests/fakes do too. A
service imports its ports and the domain, never an adapter or a driver. The plain data
the ports speak in (a child's state, a token's row, a page of findings) is declared here
beside them, once.
"""
