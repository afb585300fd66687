"""Reading a request's query string, path parameters and JSON body into their models.

A bad one is refused here with a problem+json naming what is wrong (never echoing the
value): 400 for a query or path parameter, 400 for a body that is not JSON, 422 for JSON
that breaks the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from aiohttp import web
from multidict import MultiMapping
from pydantic import BaseModel, TypeAdapter, ValidationError

from bridge.api.problems import problem

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def as_fields(values: MultiMapping[str], model: type[BaseModel]) -> dict[str, Any]:
    """The parameters as the model's fields: every value of a list field, else its one."""
    fields = model.model_fields
    out: dict[str, Any] = {}
    for name in values:
        if name in out:
            continue
        field = fields.get(name)
        many = field is not None and getattr(field.annotation, "__origin__", None) is list
        given = values.getall(name)
        # A parameter of one value given twice is a mistake, refused by the model (a list
        # is no number): which one was meant cannot be told.
        out[name] = list(given) if many or len(given) > 1 else given[0]
    return out


def errors_of(exc: ValidationError) -> list[dict[str, str]]:
    """Where and what, never the input itself."""
    return [
        {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
        for e in exc.errors(include_input=False, include_url=False, include_context=False)
    ]


def query(request: web.Request, model: type[M]) -> M:
    """The query string as *model*; a 400 problem (invalid_parameter, or invalid_cursor)
    if it is not one."""
    try:
        return model.model_validate(as_fields(request.query, model))
    except ValidationError as exc:
        raise bad_query(exc, model) from None


def bad_query(exc: ValidationError, model: type[BaseModel]) -> web.HTTPException:
    """The problem for a query string *model* refused."""
    errors = errors_of(exc)
    if any(e["type"] == "extra_forbidden" for e in exc.errors()):
        known = ", ".join(model.model_fields) or "none"
        return problem(
            400, "invalid_parameter", f"unknown query parameter(s); this endpoint takes: {known}"
        )
    if errors[0]["loc"] == "cursor":
        return problem(400, "invalid_cursor", "cursor is not one this API gave")
    return problem(400, "invalid_parameter", _said(errors), errors=errors)


def path(request: web.Request, name: str, adapter: TypeAdapter[T]) -> T:
    """Path parameter *name* as *adapter* reads it; a 400 problem if it cannot."""
    try:
        return adapter.validate_python(request.match_info[name])
    except ValidationError as exc:
        errors = [{"loc": name, "msg": e["msg"]} for e in errors_of(exc)]
        raise problem(400, "invalid_parameter", _said(errors), errors=errors) from None


def body(raw: bytes, model: type[M], *, expected: str | None = None) -> M:
    """A JSON body as *model*: 400 invalid_json if it is not JSON, 422 invalid if it breaks
    the model (*expected* says what it should look like)."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise problem(400, "invalid_json", "the body is not valid JSON") from None
        errors = errors_of(exc)
        raise problem(422, "invalid", expected or _said(errors), errors=errors) from None


def _said(errors: Iterable[Mapping[str, str]]) -> str:
    first = next(iter(errors))
    return f"{first['loc'] or 'body'}: {first['msg']}"
