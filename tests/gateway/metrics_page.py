"""One series of a gateway test server's /metrics. The counters are the server process's
and live as long as it does (one server a module), so a test compares a value before
and after what it did, never an absolute."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

#: The /metrics token of the servers of tests/gateway/conftest.py.
TOKEN = "metrics-token-gateway-Vb6Np3"


def value(url: str, name: str, token: str = TOKEN, **labels: str) -> float:
    """The sample ``name`` with ``labels`` on ``url``'s /metrics (0 before a labelled
    counter's first increment: it is not listed until then)."""
    page = httpx.get(f"{url}/metrics", timeout=30, headers={"Authorization": f"Bearer {token}"})
    assert page.status_code == 200, page.text
    return sum(sample.value for family in text_string_to_metric_families(page.text)
               for sample in family.samples
               if sample.name == name and sample.labels == labels)


def reached(url: str, name: str, least: float, token: str = TOKEN, timeout: float = 60.0,
            **labels: str) -> float:
    """The sample's value once it is at least ``least`` (a series counted after the
    client's answer ended, e.g. a relay that broke off); fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while (found := value(url, name, token, **labels)) < least:
        assert time.monotonic() < deadline, f"{name}{labels} stayed at {found}, not {least}"
        time.sleep(0.1)
    return found
