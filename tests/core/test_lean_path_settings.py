"""The lean path's parts that need no server (issue 19, item 4): which requests take it,
what its chain keeps and leaves out, and the range of ``MEMORYWEB_KEY_CACHE_SECONDS``.
Through real Daphne processes: tests/server/test_lean_api_path.py."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.test import override_settings

from apps.core import checks
from apps.core.asgi import ThreadPoolASGIHandler, request_pool, takes_lean_path

BEARER = (b"authorization", b"Bearer mw_live_abc")


def _scope(path: str, *headers: tuple[bytes, bytes]) -> dict:
    return {"type": "http", "path": path, "headers": list(headers)}


@pytest.mark.parametrize(("scope", "lean"), [
    (_scope("/api/v1/recall", BEARER), True),
    (_scope("/api/v1/recall", (b"Authorization", b"bearer x")), True),  # any case
    (_scope("/api/v1/recall", (b"authorization", b"Bearer")), True),  # refused there: 401
    (_scope("/cmm/recall", BEARER), True),  # seed 000's door
    (_scope("/v1/recall", BEARER), True),  # seed 003's door
    (_scope("/api/v1/recall"), False),  # no credential: a session, or nobody
    (_scope("/api/v1/recall", (b"authorization", b"Basic dXNlcjpwdw==")), False),
    # Django joins repeated headers with commas: DRF sees "Basic …,Bearer …", no key.
    (_scope("/api/v1/recall", (b"authorization", b"Basic x"), BEARER), False),
    (_scope("/admin/", BEARER), False),  # people's pages
    (_scope("/accounts/login/", BEARER), False),
    (_scope("/static/admin/css/base.css", BEARER), False),
    (_scope("/metrics", BEARER), False),  # its own token, not an API key
    (_scope("/api/v1/memories", BEARER, (b"accept", b"text/html,*/*")), False),  # browsable API
])
def test_which_requests_take_the_lean_path(scope, lean):
    assert takes_lean_path(scope) is lean


def test_a_door_at_the_root_makes_every_non_html_path_an_api_path(settings):
    settings.MEMORYWEB_CMM_PREFIX = ""
    assert takes_lean_path(_scope("/recall", BEARER))
    assert not takes_lean_path(_scope("/admin/", BEARER))


def test_the_lean_chain_leaves_out_only_the_browser_middleware():
    lean, full = settings.MEMORYWEB_API_MIDDLEWARE, settings.MIDDLEWARE
    assert [name for name in full if name in lean] == lean  # same order
    assert set(full) - set(lean) == {
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "allauth.account.middleware.AccountMiddleware",
        "apps.dashboard.middleware.RequireStaffMfaMiddleware",
    }
    for kept in ("django_prometheus.middleware.PrometheusBeforeMiddleware",
                 "apps.core.request_id.RequestIdMiddleware",
                 "apps.core.json_errors.JsonApiErrorsMiddleware",
                 "apps.core.middleware.ServerTimingMiddleware",
                 "apps.core.middleware.RequestBodyLimitMiddleware",
                 "django.middleware.security.SecurityMiddleware",
                 "django.middleware.common.CommonMiddleware",
                 "django.middleware.clickjacking.XFrameOptionsMiddleware",
                 "django_prometheus.middleware.PrometheusAfterMiddleware"):
        assert kept in lean, kept


def test_the_lean_handler_is_built_from_its_own_list_on_the_shared_pool():
    before = list(settings.MIDDLEWARE)
    full = ThreadPoolASGIHandler()
    lean = ThreadPoolASGIHandler(middleware_setting="MEMORYWEB_API_MIDDLEWARE")
    views = {type(getattr(m, "__self__", m)).__name__ for m in lean._view_middleware}
    assert "CsrfViewMiddleware" not in views
    assert "CsrfViewMiddleware" in {type(getattr(m, "__self__", m)).__name__
                                    for m in full._view_middleware}
    assert settings.MIDDLEWARE == before  # put back after the build
    assert full._pool is lean._pool is request_pool()


@pytest.mark.parametrize("value", [-1, 61, "5", float("nan")])
def test_key_cache_seconds_out_of_range_stop_the_start(value):
    with override_settings(MEMORYWEB_KEY_CACHE_SECONDS=value):
        errors = [m for m in run_checks(tags=[checks.TAG]) if m.is_serious()]
    assert [e.id for e in errors] == ["memoryweb.E007"]
    assert "MEMORYWEB_KEY_CACHE_SECONDS" in errors[0].msg and repr(value) in errors[0].msg


@pytest.mark.parametrize("value", [0, 0.5, 60])
def test_key_cache_seconds_in_range_pass(value):
    with override_settings(MEMORYWEB_KEY_CACHE_SECONDS=value):
        assert run_checks(tags=[checks.TAG]) == []
