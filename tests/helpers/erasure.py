"""A certified erasure through the REST routes, as people run it: a team admin requests
and approves, a system admin executes (docs/privacy.md)."""

from __future__ import annotations

from typing import Any

REQUESTS = "/api/v1/erasure-requests"


def erase_through_requests(requester: Any, executor: Any, selector: dict) -> dict:
    """Request (with a reason), approve and execute an erasure; its certificate."""
    created = requester.post(REQUESTS, {**selector, "reason": "ticket 7"})
    assert created.status_code == 201, created.content
    request_id = created.json()["id"]
    assert requester.post(f"{REQUESTS}/{request_id}/approve").status_code == 200
    executed = executor.post(f"{REQUESTS}/{request_id}/execute")
    assert executed.status_code == 200, executed.content
    return executed.json()["certificate"]
