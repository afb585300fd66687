"""`GET /v1/audit`: operators read who did what to which child, by child or by token."""

from __future__ import annotations

import re

from aiohttp import web

from bridge.api.auth import AUDIT, TOKENS, remote_of, require_operator
from bridge.api.problems import problem
from bridge.api.schools import NUMBER_FORM, SCHOOL_API, int_param, not_found, only_params
from bridge.domain.access import Role
from schemas.api import AuditEntryOut, AuditPage

_TOKEN_ID = re.compile(r"^tok_[0-9a-f]{12}$")


async def query_audit(request: web.Request) -> web.Response:
    """Province sees everything; a county its county's children and its county's tokens."""
    principal = await require_operator(request)
    only_params(request, "student_number", "token_id", "limit")
    number = request.query.get("student_number")
    token_id = request.query.get("token_id")
    limit = int_param(request, "limit", 1, 1000) or 100
    if number is None and token_id is None:
        raise problem(400, "invalid_parameter", "give student_number or token_id (or both)")
    if (number is not None and not NUMBER_FORM.match(number)) or (
        token_id is not None and not _TOKEN_ID.match(token_id)
    ):
        raise not_found()
    if principal.role is Role.COUNTY:
        if (
            number is not None
            and await request.app[SCHOOL_API].pulls.child(principal, number) is None
        ):
            raise not_found()
        if token_id is not None:
            token = await request.app[TOKENS].get(token_id)
            if token is None or token.scope.get("county_code") != principal.county_code:
                raise not_found()
    audit = request.app[AUDIT]
    entries = await audit.query(student_number=number, actor=token_id, limit=limit)
    await audit.record(
        action="audit.query", outcome="ok", principal=principal, student_number=number,
        target_token=token_id, remote=remote_of(request),
    )  # fmt: skip
    page = AuditPage(
        items=[
            AuditEntryOut(
                at=e.at, actor=e.actor, role=e.role, school_code=e.school_code,
                county_code=e.county_code, action=e.action, student_number=e.student_number,
                target_token=e.target_token, remote=e.remote, outcome=e.outcome,
                detail=e.detail, student_numbers=list(e.student_numbers),
            )
            for e in entries
        ]
    )  # fmt: skip
    return web.Response(text=page.model_dump_json(), content_type="application/json")


def add_audit_routes(app: web.Application) -> None:
    """Register the operators' audit endpoint."""
    app.router.add_get("/v1/audit", query_audit, allow_head=False)
