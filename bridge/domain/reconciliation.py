"""Three-way reconciliation rules: one child as the roster, the ledger and the registry see it.

``classify`` takes what each side says of one student number (any side may be silent)
and names every category the child falls into. It is pure: the service streams the
three sides, matches them, and stores what this says. One category cannot be decided
per number — two_numbers_one_identity looks across numbers — and is found in SQL.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from bridge.domain.working_days import Deadline, WorkingCalendar


class Category(enum.StrEnum):
    """The report's categories. Their names are part of the operator interface."""

    MATCHED = "matched"
    IN_FLIGHT = "in_flight"
    LOST_UPSTREAM = "lost_upstream"
    MISSING_AT_REGISTRY = "missing_at_registry"
    REGISTERED_NOT_GRADUATED = "registered_not_graduated"
    DEFERRED_BUT_REGISTERED = "deferred_but_registered"
    CANCELLED_BUT_REGISTERED = "cancelled_but_registered"
    IDENTITY_CONFLICT = "identity_conflict"
    TWO_NUMBERS_ONE_IDENTITY = "two_numbers_one_identity"
    FORMER_NUMBER_REGISTERED = "former_number_registered"
    BAD_SOURCE_FILE = "bad_source_file"
    FILE_DIGEST_MISMATCH = "file_digest_mismatch"
    FILE_NOT_DELIVERED = "file_not_delivered"
    FILE_NOT_PULLED = "file_not_pulled"
    STORED_FILE_DAMAGED = "stored_file_damaged"
    NOT_ARRIVED = "not_arrived"
    OVERDUE = "overdue"
    DEFERRAL_EXPIRED = "deferral_expired"
    NOT_IN_ROSTER = "not_in_roster"


class Handling(enum.StrEnum):
    """What happens to a child found in a category."""

    NONE = "none"  # all is well, or only information
    AUTO_REPAIR = "auto_repair"  # the bridge repairs it and records that it did
    OPERATOR = "operator"  # goes to an operator's worklist


@dataclass(frozen=True, slots=True)
class CategoryInfo:
    """How a category is labelled and handled."""

    zh: str
    en: str
    handling: Handling
    action: str


CATEGORIES: dict[Category, CategoryInfo] = {
    Category.MATCHED: CategoryInfo(
        "三方一致", "Matched", Handling.NONE, "Nothing to do."),
    Category.IN_FLIGHT: CategoryInfo(
        "移交中", "In flight", Handling.NONE,
        "Nothing yet: the hand-over is under way and within its deadline."),
    Category.LOST_UPSTREAM: CategoryInfo(
        "上游事件缺失", "Lost upstream", Handling.OPERATOR,
        "Ask the preschool registry to re-publish the child's events."),
    Category.MISSING_AT_REGISTRY: CategoryInfo(
        "小学学籍系统缺失", "Missing at registry", Handling.AUTO_REPAIR,
        "Re-submitted automatically; if it recurs, ask the registry why it vanished."),
    Category.REGISTERED_NOT_GRADUATED: CategoryInfo(
        "已注册但未毕业", "Registered, not graduated", Handling.OPERATOR,
        "Check with the kindergarten; withdraw the registration if the child stays."),
    Category.DEFERRED_BUT_REGISTERED: CategoryInfo(
        "缓学但已注册", "Deferred but registered", Handling.OPERATOR,
        "The registration must be withdrawn (暂缓注册学籍); check the withdrawal."),
    Category.CANCELLED_BUT_REGISTERED: CategoryInfo(
        "已注销但已注册", "Cancelled but registered", Handling.OPERATOR,
        "A cancelled record must not be registered; have the registration withdrawn."),
    Category.IDENTITY_CONFLICT: CategoryInfo(
        "身份冲突", "Identity conflict", Handling.OPERATOR,
        "The registry holds this identity under another number: the county resolves it."),
    Category.TWO_NUMBERS_ONE_IDENTITY: CategoryInfo(
        "一人多号", "Two numbers, one identity", Handling.OPERATOR,
        "One person must hold one number (一人一号): the county resolves the duplicate."),
    Category.FORMER_NUMBER_REGISTERED: CategoryInfo(
        "旧学籍号仍有注册", "Registered under a former number", Handling.AUTO_REPAIR,
        "Moved to the child's current number or withdrawn automatically (一人一号)."),
    Category.BAD_SOURCE_FILE: CategoryInfo(
        "档案文件校验失败", "Bad source file", Handling.OPERATOR,
        "Ask the kindergarten to re-issue the record file, then retry."),
    Category.FILE_DIGEST_MISMATCH: CategoryInfo(
        "档案摘要不一致", "File digest mismatch", Handling.AUTO_REPAIR,
        "Re-uploaded automatically from the bridge's verified copy."),
    Category.FILE_NOT_DELIVERED: CategoryInfo(
        "档案未送达", "File not delivered", Handling.AUTO_REPAIR,
        "Re-uploaded automatically from the bridge's verified copy."),
    Category.STORED_FILE_DAMAGED: CategoryInfo(
        "档案存储校验失败", "Stored file damaged", Handling.AUTO_REPAIR,
        "The bridge's sealed copy failed its integrity check: fetched again from the preschool"
        " registry automatically. See the audit log; if it recurs, suspect tampering."),
    Category.FILE_NOT_PULLED: CategoryInfo(
        "学校未接收档案", "File not pulled", Handling.OPERATOR,
        "Remind the school to take the record file in (接收学籍档案)."),
    Category.NOT_ARRIVED: CategoryInfo(
        "未报到", "Not arrived", Handling.OPERATOR,
        "Lost-child list: find the child with the school and the family."),
    Category.OVERDUE: CategoryInfo(
        "超期未完成", "Overdue", Handling.OPERATOR,
        "The hand-over passed its 10 working days: see why it is stuck."),
    Category.DEFERRAL_EXPIRED: CategoryInfo(
        "缓学到期", "Deferral expired", Handling.OPERATOR,
        "The deferral ran out: the child may be out of school; contact the family."),
    Category.NOT_IN_ROSTER: CategoryInfo(
        "无学前学籍", "Not in roster", Handling.NONE,
        "Information: a school created a record for a child without a preschool one."),
}  # fmt: skip

# Categories the bridge repairs by itself.
AUTO_REPAIRED = frozenset(c for c, i in CATEGORIES.items() if i.handling is Handling.AUTO_REPAIR)
# Categories of the operators' worklist.
WORKLIST = frozenset(c for c, i in CATEGORIES.items() if i.handling is Handling.OPERATOR)

_HANDED_OVER = frozenset({"file_delivered", "enrolled"})
_REGISTERED = frozenset({"registered", "file_delivered", "enrolled"})
_UNDER_WAY = frozenset({"received", "file_fetched", "registered"})
_ACTIVE_AT_REGISTRY = frozenset({"registered", "enrolled"})


class RosterSide(Protocol):
    """What classify reads of the roster's word on a child (a RosterEntry or a wire item)."""

    @property
    def student_number(self) -> str: ...
    @property
    def id_number(self) -> str | None: ...
    @property
    def state(self) -> str: ...
    @property
    def childseq(self) -> int: ...
    @property
    def kindergarten_code(self) -> str | None: ...


class RegistrySide(Protocol):
    """What classify reads of the registry's word on a number (a RegistryEntry or a wire item)."""

    @property
    def student_number(self) -> str: ...
    @property
    def id_number(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def school_code(self) -> str | None: ...
    @property
    def record_file_sha256(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class RosterEntry:
    """A2: the preschool registry's word on one child of the cohort."""

    student_number: str
    id_number: str | None
    state: str
    childseq: int
    kindergarten_code: str | None = None


class LedgerEntry(NamedTuple):
    """The bridge's ledger row for one child (derived columns only).

    A NamedTuple rather than a frozen dataclass: a run makes one per child of the cohort,
    straight from the database row, at a tenth of a frozen dataclass's cost.
    """

    child_id: int
    student_number: str
    status: str
    phase: str
    id_number: str | None = None
    county_code: str | None = None
    kindergarten_code: str | None = None
    school_code: str | None = None
    deferred_until: dt.date | None = None
    set_aside_reason: str | None = None
    set_aside_code: str | None = None
    last_childseq: int = 0
    first_graduated_on: dt.date | None = None
    handed_over_on: dt.date | None = None
    file_sha256: str | None = None  # the verified file, as claimed by the graduation
    arrived: bool = False
    file_pulled: bool = False
    erased: bool = False  # personal data and record file erased after retention
    file_damaged: bool = False  # the stored file failed authentication at rest


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """B8: the primary registry's word on one student number of the cohort."""

    student_number: str
    id_number: str | None
    status: str
    school_code: str | None = None
    record_file_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """The day the check runs on and the working-day allowances of each category."""

    today: dt.date
    calendar: WorkingCalendar
    term_start: dt.date
    overdue_days: int = 10  # rules.md: each side completes its part within 10 working days
    file_not_pulled_days: int = 5
    not_arrived_days: int = 5


class Finding(NamedTuple):
    """The categories of one child, with what an operator needs to know of each.

    A NamedTuple for the same reason as LedgerEntry: one is made per child of a cohort.
    """

    student_number: str
    categories: frozenset[Category]
    detail: dict[str, str]
    county_code: str | None = None
    kindergarten_code: str | None = None
    school_code: str | None = None
    provisional: bool = False


def _deadline_detail(detail: dict[str, str], name: str, deadline: Deadline) -> None:
    detail[name] = deadline.day.isoformat()
    if deadline.provisional:
        detail["provisional"] = "true"


def classify(
    roster: RosterSide | None,
    ledger: LedgerEntry | None,
    registry: RegistrySide | None,
    policy: Policy,
    *,
    former_holder: LedgerEntry | None = None,
) -> Finding:
    """Every category the child under this student number falls into.

    *former_holder* is the ledger's child that once held this number and holds another
    now (the ledger follows a child from its temporary number to its lasting one).
    """
    present = roster or ledger or registry
    if present is None:
        raise ValueError("a finding needs at least one side")
    ledger_side = ledger  # where the report's county, kindergarten and school come from
    found: set[Category] = set()
    detail: dict[str, str] = {}
    at_registry = registry is not None and registry.status in _ACTIVE_AT_REGISTRY
    # The roster is the source of truth for the child's state; the ledger stands in for it.
    state = roster.state if roster else (ledger.status if ledger else None)

    if at_registry and roster is None and ledger is None and former_holder is not None:
        # Not a child without a preschool record: a registration the child's hand-over
        # left behind under its old number (or one made there by hand), so one person
        # holds two numbers at the registry.
        found.add(Category.FORMER_NUMBER_REGISTERED)
        detail["current_number"] = former_holder.student_number
        ledger_side = former_holder
    elif at_registry and roster is None:
        found.add(Category.NOT_IN_ROSTER)
    if at_registry and state == "in_kindergarten":
        found.add(Category.REGISTERED_NOT_GRADUATED)
    if at_registry and state == "deferred":
        found.add(Category.DEFERRED_BUT_REGISTERED)
    if at_registry and state == "cancelled":
        found.add(Category.CANCELLED_BUT_REGISTERED)
    if (
        roster is not None
        and roster.state == "graduated"
        and (
            ledger is None
            or (ledger.status != "graduated" and ledger.last_childseq < roster.childseq)
        )
    ):
        found.add(Category.LOST_UPSTREAM)

    if ledger is not None:
        if ledger.erased:
            # The ledger keeps numbers, digests and dates only: its identity number is gone.
            detail["personal_data_erased"] = "true"
        elif ledger.file_damaged:
            found.add(Category.STORED_FILE_DAMAGED)
        if ledger.set_aside_reason:
            detail["set_aside_reason"] = ledger.set_aside_reason
            if ledger.set_aside_code:
                detail["registry_answer"] = ledger.set_aside_code
        if ledger.set_aside_reason == "identity_conflict":
            found.add(Category.IDENTITY_CONFLICT)
        if ledger.set_aside_reason == "bad_source_file":
            found.add(Category.BAD_SOURCE_FILE)
        if ledger.status == "deferred" and ledger.deferred_until is not None:
            detail["deferred_until"] = ledger.deferred_until.isoformat()
            if state == "deferred" and policy.today > ledger.deferred_until:
                found.add(Category.DEFERRAL_EXPIRED)
        if ledger.status == "graduated" and state == "graduated":
            found |= _graduated(roster, ledger, registry, at_registry, policy, detail)

    provisional = detail.get("provisional") == "true"
    return Finding(
        student_number=present.student_number,
        categories=frozenset(found),
        detail=detail,
        county_code=ledger_side.county_code if ledger_side else None,
        kindergarten_code=(ledger_side.kindergarten_code if ledger_side else None)
        or (roster.kindergarten_code if roster else None),
        school_code=(registry.school_code if registry else None)
        or (ledger_side.school_code if ledger_side else None),
        provisional=provisional,
    )


def _graduated(
    roster: RosterSide | None,
    ledger: LedgerEntry,
    registry: RegistrySide | None,
    at_registry: bool,
    policy: Policy,
    detail: dict[str, str],
) -> set[Category]:
    """Categories of a child both the ledger and the roster (if any) call graduated."""
    found: set[Category] = set()
    cal = policy.calendar
    handed_over = ledger.phase in _HANDED_OVER
    if ledger.phase in _REGISTERED and not at_registry:
        found.add(Category.MISSING_AT_REGISTRY)
    reg_sha = registry.record_file_sha256 if registry and at_registry else None
    if at_registry and reg_sha is not None and ledger.file_sha256 and reg_sha != ledger.file_sha256:
        found.add(Category.FILE_DIGEST_MISMATCH)
    if at_registry and reg_sha is None and handed_over:
        found.add(Category.FILE_NOT_DELIVERED)
    if (
        roster is not None
        and registry is not None
        and at_registry
        and handed_over
        and roster.id_number == registry.id_number
        and (ledger.erased or ledger.id_number == roster.id_number)
        and reg_sha is not None
        and reg_sha == ledger.file_sha256
        # The ledger learns the school only from the intake's answer; none known agrees.
        and (ledger.school_code is None or ledger.school_code == registry.school_code)
    ):
        found.add(Category.MATCHED)

    if not handed_over and ledger.first_graduated_on is not None:
        deadline = cal.add_working_days(ledger.first_graduated_on, policy.overdue_days)
        _deadline_detail(detail, "deadline", deadline)
        if deadline.passed(policy.today):
            found.add(Category.OVERDUE)
        elif ledger.phase in _UNDER_WAY:
            found.add(Category.IN_FLIGHT)
    elif not handed_over and ledger.phase in _UNDER_WAY:
        found.add(Category.IN_FLIGHT)

    # After erasure there is no file left to pull: the school has the child (and the file
    # from the registry); a reminder would ask for the impossible.
    if (
        handed_over
        and not ledger.file_pulled
        and not ledger.erased
        and ledger.handed_over_on is not None
    ):
        pull_by = cal.add_working_days(ledger.handed_over_on, policy.file_not_pulled_days)
        if pull_by.passed(policy.today):
            _deadline_detail(detail, "pull_by", pull_by)
            found.add(Category.FILE_NOT_PULLED)

    arrived = ledger.arrived or (registry is not None and registry.status == "enrolled")
    if not arrived and (at_registry or ledger.phase in _REGISTERED):
        report_by = cal.add_working_days(policy.term_start, policy.not_arrived_days)
        if report_by.passed(policy.today):
            _deadline_detail(detail, "report_by", report_by)
            found.add(Category.NOT_ARRIVED)
    return found
