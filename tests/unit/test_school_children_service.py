"""What a school reads of its children, on in-memory ports: scope first, every read kept."""

from __future__ import annotations

import pytest

from bridge.domain.access import PresentedToken, Principal, Role
from bridge.errors import NotFound
from bridge.services.ports.schools import ListQuery
from bridge.services.schools import SchoolChildren
from tests.fakes.schools import MemorySchools, child_view

SCHOOL, OTHER = "2111010898", "2111010899"
NUMBERS = ["G110108202001097076", "G110105201903070012", "G110105201903070039"]
OWN = Principal("tok_00000000000a", Role.SCHOOL, SCHOOL)
STRANGER = Principal("tok_00000000000b", Role.SCHOOL, OTHER)
COUNTY = Principal("tok_00000000000c", Role.COUNTY, None, "110108")


def setup() -> tuple[MemorySchools, SchoolChildren]:
    schools = MemorySchools()
    schools.children = [child_view(i, n, SCHOOL, "110108") for i, n in enumerate(NUMBERS, start=1)]
    for principal in (OWN, STRANGER, COUNTY):
        schools.admit_token(principal, "hash-" + principal.token_id)
    return schools, SchoolChildren(schools, schools, schools, schools.audit)


@pytest.mark.parametrize(
    ("who", "number"),
    [(STRANGER, NUMBERS[0]), (OWN, "G11010520190307001X"), (OWN, NUMBERS[0] + "\n")],
)
async def test_out_of_scope_unknown_and_malformed_are_refused_alike(
    who: Principal, number: str
) -> None:
    schools, children = setup()
    with pytest.raises(NotFound) as refused:
        await children.find(who, number, action="handoff.read", remote="10.0.0.5")
    assert str(refused.value) == "no such hand-over or school for this token"
    [line] = schools.audit.entries
    assert (line.action, line.outcome) == ("handoff.read", "not_found")
    # A malformed number is not written to the log as if it were one.
    assert line.student_number == (None if number.endswith("\n") else number)


async def test_a_child_in_scope_is_found_and_its_reading_audited() -> None:
    schools, children = setup()
    child = await children.find(COUNTY, NUMBERS[1], action="handoff.read", remote=None)
    await children.shown(COUNTY, child, None)
    assert schools.audit.actions() == [("handoff.read", "ok")]


async def test_a_page_is_read_with_its_token_and_one_line_names_every_child() -> None:
    schools, children = setup()
    found = await children.page(
        PresentedToken(OWN.token_id, "hash-" + OWN.token_id), ListQuery(SCHOOL, limit=2)
    )
    assert found.token is not None
    assert [c.student_number for c in found.children] == NUMBERS  # limit + 1: more follow
    await children.listed(OWN, SCHOOL, found.children[:2], "10.0.0.5")
    [line] = schools.audit.entries
    assert line.action == "handoff.list" and line.student_numbers == NUMBERS[:2]
    assert line.detail == {"school_code": SCHOOL}
    await children.listed(OWN, SCHOOL, [], None)  # an empty page leaves no line
    assert len(schools.audit.entries) == 1


async def test_a_forged_secret_reads_no_child() -> None:
    _, children = setup()
    found = await children.page(PresentedToken(OWN.token_id, "a guess"), ListQuery(SCHOOL))
    assert found.token is not None and found.children == []
