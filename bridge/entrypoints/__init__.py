"""How the bridge is started: the `xueji` command line, its commands, and the demo.

Each entry point reads the settings, asks bridge.bootstrap for what it needs, and calls
use cases; none builds an adapter itself.
"""
