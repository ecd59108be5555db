"""Per-address limits key on the peer, not on a header anyone can send (issue 16, item 7).

``X-Forwarded-For`` is believed only as far as ``MEMORYWEB_TRUSTED_PROXIES`` says: with
0 (the default) the peer address (REMOTE_ADDR) is the client; with N proxies in front,
the address the outermost of them saw (the N-th entry from the right). The token
endpoint's limit and the login limits (allauth) use the same rule.
"""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import RequestFactory
from rest_framework.test import APIClient

TOKEN = "/v1/auth/token"
GUESS = {"api_key": "mw_live_guess"}


@pytest.fixture(autouse=True)
def fresh_limits(settings):
    settings.MEMORYWEB_TOKEN_RATE = "3/min"
    cache.clear()
    yield
    cache.clear()


def _guess(client: APIClient, **headers) -> int:
    return client.post(TOKEN, GUESS, format="json", **headers).status_code


def test_a_forged_forwarded_for_does_not_buy_more_guesses(db):
    client = APIClient()
    assert [_guess(client) for _ in range(3)] == [401, 401, 401]
    assert _guess(client) == 429
    # The same peer claiming to be someone else: still that peer.
    assert _guess(client, HTTP_X_FORWARDED_FOR="203.0.113.77") == 429
    assert _guess(client, HTTP_X_FORWARDED_FOR="203.0.113.78, 203.0.113.79") == 429


def test_nor_can_it_aim_the_limit_at_another_address(db):
    client = APIClient()
    for _ in range(4):
        _guess(client, HTTP_X_FORWARDED_FOR="198.51.100.9")
    victim = APIClient(REMOTE_ADDR="198.51.100.9")
    assert _guess(victim) == 401


def test_behind_a_trusted_proxy_the_address_it_saw_is_the_client(db, settings):
    settings.MEMORYWEB_TRUSTED_PROXIES = 1
    proxy = APIClient(REMOTE_ADDR="10.0.0.2")
    for _ in range(3):
        assert _guess(proxy, HTTP_X_FORWARDED_FOR="203.0.113.77") == 401
    assert _guess(proxy, HTTP_X_FORWARDED_FOR="203.0.113.77") == 429
    # A client that prepends its own entry does not escape: the proxy appended the real one.
    assert _guess(proxy, HTTP_X_FORWARDED_FOR="192.0.2.1, 203.0.113.77") == 429
    # Another client behind the same proxy has its own budget.
    assert _guess(proxy, HTTP_X_FORWARDED_FOR="203.0.113.80") == 401


@pytest.mark.parametrize(("proxies", "remote", "xff", "expected"), [
    (0, "192.0.2.10", None, "192.0.2.10"),
    (0, "192.0.2.10", "203.0.113.7", "192.0.2.10"),
    (1, "10.0.0.2", "203.0.113.7", "203.0.113.7"),
    (1, "10.0.0.2", "6.6.6.6, 203.0.113.7", "203.0.113.7"),
    (2, "10.0.0.3", "6.6.6.6, 203.0.113.7, 10.0.0.2", "203.0.113.7"),
    (2, "10.0.0.3", "203.0.113.7", "10.0.0.3"),  # fewer hops than configured: the peer
    (1, "10.0.0.2", "not-an-address", "10.0.0.2"),
    (1, "10.0.0.2", "203.0.113.7:4711", "203.0.113.7"),
    (1, "10.0.0.2", "[2001:db8::1]:4711", "2001:db8::1"),
    (1, "10.0.0.2", None, "10.0.0.2"),
])
def test_one_rule_for_the_token_limit_and_the_login_limits(settings, proxies, remote, xff,
                                                            expected):
    from apps.core.client_address import client_address
    from apps.dashboard.accounts import AccountAdapter

    settings.MEMORYWEB_TRUSTED_PROXIES = proxies
    headers = {"HTTP_X_FORWARDED_FOR": xff} if xff is not None else {}
    request = RequestFactory().post("/accounts/login/", REMOTE_ADDR=remote, **headers)
    assert client_address(request) == expected
    assert AccountAdapter(request).get_client_ip(request) == expected
