"""In production the dashboard's static files (the admin's, allauth's and MemoryWeb's)
are served by WhiteNoise from ``collectstatic``'s hashed copies, by the one Daphne
process: no other host, no separate web server needed."""

from __future__ import annotations

import re

import httpx

from tests.helpers.embedded import manage, migrate
from tests.servers import DaphneServer


def test_production_serves_hashed_static_files(embedded_env, tmp_path):
    env = {**embedded_env, "MEMORYWEB_ENV": "production", "SECRET_KEY": "x" * 50,
           "SECURE_SSL_REDIRECT": "false",  # plain HTTP here, no proxy in front
           "ALLOWED_HOSTS": "127.0.0.1", "STATIC_ROOT": str(tmp_path / "static")}
    migrate(env)
    manage(env, "collectstatic", "--no-input", "-v0")
    with DaphneServer(tmp_path / "daphne.log", env) as server:
        client = httpx.Client(base_url=server.url, follow_redirects=True, timeout=30)
        login = client.get("/admin/")
        assert login.url.path == "/accounts/login/"
        assets = set(re.findall(r'(?:src|href)="(/static/[^"]+)"', login.text))
        assert len(assets) == 3  # the login page in the admin's look
        named = manage(env, "shell", "-c", "from django.templatetags.static import static; "
                       "print(static('dashboard/dashboard.css')); print(static('dashboard/live.js'))")
        assets |= {line for line in named.split() if line.startswith("/static/")}
        assert all(re.search(r"\.[0-9a-f]{12}\.(css|js)$", url) for url in assets), assets  # hashed
        for url in sorted(assets):
            response = client.get(url)
            assert response.status_code == 200, url
            assert "max-age=315360000" in response.headers["cache-control"], url  # immutable
        assert client.get("/static/dashboard/missing.js").status_code == 404
