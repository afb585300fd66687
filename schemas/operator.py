"""Wire models of the operators' API and console: one per query string, form and body.

Queries and forms are text (see schemas.query); JSON bodies are strict: an entry year is
a JSON integer, never ``true`` or ``"2026"``. Parameters an endpoint does not use are
ignored by the console (its links carry a few); the JSON API refuses them (400).
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from bridge.domain.reconciliation import Category
from schemas.query import BIGINT_MAX, Blank, EntryYearParam, QueryInt, RowId

# Free-text filters and keys: bounded, never a control character.
Text = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]
Note = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)]
CountyFilter = Annotated[Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")] | None, Blank]
KindergartenFilter = Annotated[
    Annotated[str, StringConstraints(pattern=r"^[0-9]{10}$")] | None, Blank
]


def _flag(value: object) -> object:
    # ?new=1 (or true, yes) asks for what is new; anything else leaves it out, as ever.
    return value in ("1", "true", "yes") if isinstance(value, str) else value


NewOnly = Annotated[bool, BeforeValidator(_flag)]


class _Query(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _ApiQuery(_Query):
    # The JSON API names every parameter it takes (in /v1/openapi.json): any other is a
    # caller's mistake, refused with the list of those it takes.
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


# --- the JSON API ------------------------------------------------------------------------
class RunsQuery(_ApiQuery):
    """`GET /v1/operator/reconciliations`."""

    entry_year: Annotated[EntryYearParam | None, Blank] = None


class ReportQuery(_ApiQuery):
    """`GET /v1/operator/reconciliations/{run_id}` (`latest` needs `entry_year`)."""

    entry_year: Annotated[EntryYearParam | None, Blank] = None
    county: CountyFilter = None
    kindergarten: KindergartenFilter = None


class ItemsQuery(ReportQuery):
    """`GET /v1/operator/reconciliations/{run_id}/items`."""

    category: list[Category] = Field(default_factory=list)
    new: NewOnly = False
    format: Literal["json", "csv"] = "json"
    limit: Annotated[QueryInt, Field(ge=1, le=5000)] = 500
    offset: Annotated[QueryInt, Field(ge=0, le=BIGINT_MAX)] = 0


class SetAsideQuery(_ApiQuery):
    """`GET /v1/operator/set-aside`: groups, and a reason's cases."""

    reason: Text | None = None
    answer: Text | None = None


class ParkedQuery(_ApiQuery):
    """`GET /v1/operator/parked`: groups, and a reason's messages."""

    reason: Text | None = None


class ReconcileIn(_Body):
    """`POST /v1/operator/reconciliations`."""

    entry_year: Annotated[int, Field(ge=2000, le=2100)]


class RetrySetAsideIn(_Body):
    """`POST /v1/operator/set-aside/retry`: a group (reason, and its registry answer) or a
    child."""

    reason: Text | None = None
    registry_answer: Text | None = None
    student_number: Text | None = None

    @model_validator(mode="after")
    def _names_something(self) -> Self:
        if not self.reason and not self.student_number:
            raise ValueError("name a reason (a group) or a student_number")
        return self


class ResolveSetAsideIn(_Body):
    """`POST /v1/operator/set-aside/resolve`."""

    student_number: Text
    note: Note


class RetryParkedIn(_Body):
    """`POST /v1/operator/parked/retry`: one message (id) or a group (reason)."""

    id: Annotated[int, Field(ge=1, le=BIGINT_MAX)] | None = None
    reason: Text | None = None

    @model_validator(mode="after")
    def _names_something(self) -> Self:
        if self.id is None and not self.reason:
            raise ValueError("name a reason (a group) or an id")
        return self


class ResolveParkedIn(_Body):
    """`POST /v1/operator/parked/{id}/resolve`."""

    note: Note


# --- the console -------------------------------------------------------------------------
class ConsoleRunQuery(_Query):
    """Which cohort and run a console page shows, and the operator's filters."""

    entry_year: Annotated[EntryYearParam | None, Blank] = None
    run_id: Annotated[RowId | None, Blank] = None
    county: CountyFilter = None
    kindergarten: KindergartenFilter = None


class ConsoleReportQuery(ConsoleRunQuery):
    """`/console/report` and `/console/export.csv`."""

    category: Annotated[Category | None, Blank] = None
    new: NewOnly = False
    page: Annotated[Annotated[QueryInt, Field(ge=0, le=100_000)] | None, Blank] = None


SchoolFilter = KindergartenFilter  # a 学校标识码: ten digits


class ConsoleLostQuery(ConsoleRunQuery):
    """`/console/lost` and `/console/lost.csv`: the lost-child list, filtered and paged."""

    category: Annotated[Literal["not_arrived", "file_not_pulled", "overdue"] | None, Blank] = None
    school: SchoolFilter = None
    page: Annotated[Annotated[QueryInt, Field(ge=0, le=100_000)] | None, Blank] = None
    # An identified export says what it is for (audited); without one it is de-identified.
    purpose: Annotated[
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=200,
                                         pattern=r"^[^\x00-\x1f\x7f]*$")] | None,
        Blank,
    ] = None  # fmt: skip


class FlashQuery(_Query):
    """What the last action did, carried by the redirect after it (codes, never text)."""

    flash: Literal[
        "retried", "resolved", "note_missing", "not_open", "reconciled", "busy",
        "parked_retried", "parked_resolved", "parked_already",
    ]  # fmt: skip
    n: Annotated[QueryInt, Field(ge=0, le=1_000_000)] = 0
    skipped: Annotated[QueryInt, Field(ge=0, le=1_000_000)] = 0


StudentNumberPath = Annotated[str, StringConstraints(pattern=r"^[GJL][0-9A-Z]{18}$")]


class ConsoleWorklistQuery(_Query):
    """`/console/worklist`: a group's cases (an empty answer is a group's answer too)."""

    reason: Annotated[Text | None, Blank] = None
    answer: Text | None = None


class ConsoleParkedQuery(_Query):
    """`/console/parked`: a group's messages, and one message."""

    reason: Annotated[Text | None, Blank] = None
    id: Annotated[RowId | None, Blank] = None


class ReconcileForm(_Query):
    """`POST /console/reconcile`."""

    entry_year: EntryYearParam


class SetAsideForm(_Query):
    """`POST /console/set-aside`: retry a group or a child, or resolve a child."""

    action: Literal["retry", "resolve"]
    reason: Annotated[Text | None, Blank] = None
    answer: Text | None = None
    student_number: Annotated[StudentNumberPath | None, Blank] = None
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000)] = ""
    # Where the operator acted from: the action redirects back there, filters kept.
    back: Literal["worklist", "case"] = "worklist"

    @model_validator(mode="after")
    def _names_something(self) -> Self:
        # As the API's: a retry naming neither a group nor a child would release them all.
        if self.action == "retry" and not self.reason and not self.student_number:
            raise ValueError("name a reason (a group) or a student_number")
        return self


class ParkedForm(_Query):
    """`POST /console/parked`: retry a group or a message, or resolve a message."""

    action: Literal["retry", "resolve"]
    id: Annotated[RowId | None, Blank] = None
    reason: Annotated[Text | None, Blank] = None
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000)] = ""
