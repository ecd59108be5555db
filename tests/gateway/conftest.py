"""The gateway's server for a module: Daphne and the fake LLM API (tests/helpers/gateway.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway import metrics_page
from tests.helpers.gateway import GatewaySite, gateway_site


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[GatewaySite]:
    """Daphne with both upstreams set, one per test module; memories stored by each test
    module's own fixture; /metrics on (``metrics_page.TOKEN``)."""
    with gateway_site(tmp_path_factory.mktemp("gateway"),
                      MEMORYWEB_METRICS_TOKEN=metrics_page.TOKEN) as found:
        yield found


@pytest.fixture
def fake(site):
    """The fake upstream, its record emptied for the test."""
    site.fake.reset()
    return site.fake
