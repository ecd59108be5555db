"""Helpers shared by the route-coverage tests (isolation matrix, audit of write paths)."""

from __future__ import annotations

from typing import Any

#: Where the coverage tests look for routes: MemoryWeb's API and the drop-in prefixes.
API_PREFIXES = ("api/v1/", "cmm/", "v1/")


def fill(body: Any, values: dict[str, Any]) -> Any:
    """A body's ``{placeholder}`` strings filled in (ids that live in a body, not a path)."""
    if isinstance(body, dict):
        return {k: fill(v, values) for k, v in body.items()}
    if isinstance(body, list):
        return [fill(v, values) for v in body]
    if isinstance(body, str) and body.startswith("{") and body.endswith("}"):
        return str(values[body[1:-1]])
    return body
