"""Refused attempts written to the audit log are bounded per source and in all, per minute."""

from __future__ import annotations

from bridge.domain.refusal_budget import RefusalBudget


def test_each_source_has_its_own_allowance_per_minute() -> None:
    budget = RefusalBudget(per_source=2, in_all=100)
    assert [budget.take("10.0.0.1", 5.0) for _ in range(3)] == [True, True, False]
    assert budget.take("10.0.0.2", 6.0)  # another source is not held back by the first
    assert budget.take("10.0.0.1", 61.0)  # a new minute, a new allowance


def test_all_sources_together_are_bounded_too() -> None:
    budget = RefusalBudget(per_source=5, in_all=3)
    taken = [budget.take(f"10.0.0.{i}", 1.0) for i in range(10)]
    assert taken == [True] * 3 + [False] * 7
    assert budget.take("10.0.0.1", 60.0)


def test_the_table_of_sources_is_dropped_with_each_minute() -> None:
    budget = RefusalBudget(per_source=1, in_all=10_000)
    for i in range(5000):
        budget.take(f"s{i}", 10.0)
    budget.take("new", 70.0)
    assert len(budget._spent) == 1
