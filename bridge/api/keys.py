"""What the aiohttp application holds: the use cases it was built with."""

from __future__ import annotations

from aiohttp import web

from bridge.services.use_cases import UseCases

USE_CASES = web.AppKey("use_cases", UseCases)
