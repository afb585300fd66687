"""`GET /v1/audit`: operators read who did what to which child, by child or by token."""

from __future__ import annotations

from aiohttp import web

from bridge.api.auth import remote_of, require_operator
from bridge.api.keys import USE_CASES
from bridge.api.params import query
from bridge.api.problems import problem
from bridge.domain.access import TOKEN_ID_FORM
from bridge.domain.student_number import has_number_form
from bridge.errors import NotFound
from bridge.services.acting import Acting
from schemas.api import AuditPage, AuditQuery


async def query_audit(request: web.Request) -> web.Response:
    """Province sees everything; a county its county's children and its county's tokens."""
    principal = await require_operator(request)
    asked = query(request, AuditQuery)
    number, token_id = asked.student_number, asked.token_id
    if number is None and token_id is None:
        raise problem(400, "invalid_parameter", "give student_number or token_id (or both)")
    # A malformed one is answered like an unknown one: nothing to learn from the refusal.
    if (number is not None and not has_number_form(number)) or (
        token_id is not None and not TOKEN_ID_FORM.fullmatch(token_id)
    ):
        raise NotFound()
    entries = await request.app[USE_CASES].audit_trail.query(
        Acting.by(principal, remote_of(request)),
        student_number=number, token_id=token_id, limit=asked.limit,
    )  # fmt: skip
    if entries is None:
        raise NotFound()
    page = AuditPage(items=entries)
    return web.Response(text=page.model_dump_json(), content_type="application/json")


def add_audit_routes(app: web.Application) -> None:
    """Register the operators' audit endpoint."""
    app.router.add_get("/v1/audit", query_audit)
