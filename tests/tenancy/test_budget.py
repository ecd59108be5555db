"""The one rate budget and the connection leases (apps/tenancy/budget.py), on the
configured cache, with the clock passed in (no sleeping, no timing assertions)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.cache import cache

from apps.tenancy import budget

T0 = 1_800_000_000.0  # the start of a minute (divisible by 60)


@pytest.fixture
def label() -> str:
    return f"key:test-{uuid.uuid4().hex}"


def test_the_budget_slides_and_a_refusal_takes_nothing(settings, label):
    settings.MEMORYWEB_RATE_LIMIT = "3/min"
    assert [budget.draw(label, now=T0 + i).allowed for i in range(3)] == [True] * 3
    refused = budget.draw(label, now=T0 + 10)
    assert not refused.allowed and refused.rate == "3/min"
    # The previous minute still weighs 3 x 2/3 = 2 at 20 s into the next: one more fits
    # then, and that is what Retry-After says (10 s + 70 s = 80 s).
    assert refused.retry_after == pytest.approx(70) and refused.retry_after_seconds == 70
    assert not budget.draw(label, now=T0 + 79).allowed  # refusals took nothing ...
    assert budget.draw(label, now=T0 + 80).allowed  # ... so the promise holds
    assert not budget.draw(label, now=T0 + 81).allowed


def test_a_cost_counts_as_that_many_requests(settings, label):
    settings.MEMORYWEB_RATE_LIMIT = "5/s"
    assert budget.draw(label, cost=4, now=T0).allowed
    assert not budget.draw(label, cost=2, now=T0).allowed
    assert budget.draw(label, cost=1, now=T0).allowed


def test_unlimited_and_separate_labels(settings, label):
    settings.MEMORYWEB_RATE_LIMIT = ""
    assert all(budget.draw(label, now=T0).allowed for _ in range(50))
    settings.MEMORYWEB_RATE_LIMIT = "1/hour"
    assert budget.draw(label + "-a", now=T0).allowed and budget.draw(label + "-b", now=T0).allowed


def test_concurrent_draws_never_overspend(settings, label):
    settings.MEMORYWEB_RATE_LIMIT = "20/min"
    with ThreadPoolExecutor(8) as pool:
        verdicts = list(pool.map(lambda _: budget.draw(label, now=T0), range(60)))
    assert sum(v.allowed for v in verdicts) == 20


@pytest.mark.parametrize(("text", "parsed"), [("6000/min", (6000, 60)), ("20/s", (20, 1)),
                                              (" 7 / hour ", (7, 3600)), ("1/day", (1, 86400)),
                                              ("", None)])
def test_rates_use_drf_syntax(text, parsed):
    assert budget.parse_rate(text) == parsed


@pytest.mark.parametrize("text", ["lots", "5", "/min", "5/week", "-1/min"])
def test_nonsense_rates_are_refused(text):
    with pytest.raises(ValueError, match="not a rate"):
        budget.parse_rate(text)


def test_leases_cap_release_and_expire(label):
    first, second = budget.acquire("ws", label, 2), budget.acquire("ws", label, 2)
    assert first and second and first.key != second.key
    assert budget.acquire("ws", label, 2) is None
    first.release()
    third = budget.acquire("ws", label, 2)
    assert third is not None
    first.release()  # no longer first's slot: releasing again frees nothing
    assert budget.acquire("ws", label, 2) is None
    cache.delete(second.key)  # what expiry does to the slot of a crashed process
    assert budget.acquire("ws", label, 2) is not None
    second.renew()  # its slot was taken meanwhile: renewing does not steal it back
    assert cache.get(second.key) != second.token


def test_many_principals_do_not_push_a_busy_ones_count_out(settings, label):
    """The in-process cache kept 300 entries (Django's default) and culled the oldest: with
    a few hundred principals active, a key's count was dropped and its budget started
    again. The embedded cache holds far more than that."""
    settings.MEMORYWEB_RATE_LIMIT = "1/min"
    assert budget.draw(label, now=T0).allowed
    for others in range(1000):
        budget.draw(f"key:other-{others}-{label}", now=T0 + 1)
    assert not budget.draw(label, now=T0 + 2).allowed
