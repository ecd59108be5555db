"""WhiteNoise's static-file scan kept for the run (tests/plugins/static_files.py): a
middleware built later serves exactly what a fresh scan gives, and a changed setting
gets a scan of its own."""

from __future__ import annotations

from whitenoise.middleware import WhiteNoiseMiddleware

from tests.plugins import static_files


def _describe(files: dict) -> dict[str, tuple]:
    """What a client would get for each URL: the file(s) served and their headers."""
    return {
        url: (
            type(found).__name__,
            getattr(found, "etag", None),
            [
                (path, sorted(dict(headers).items()))
                for _, path, headers in getattr(found, "alternatives", [])
            ],
        )
        for url, found in files.items()
    }


def _fresh(monkeypatch) -> WhiteNoiseMiddleware:
    with monkeypatch.context() as patch:
        patch.setattr(WhiteNoiseMiddleware, "add_files_from_finders", static_files.ORIGINAL)
        return WhiteNoiseMiddleware(lambda request: None)


def test_a_later_middleware_serves_what_a_fresh_scan_would(static_files_scanned_once, monkeypatch):
    first, second = (WhiteNoiseMiddleware(lambda request: None) for _ in range(2))
    fresh = _fresh(monkeypatch)
    assert any(url.endswith("/admin/css/base.css") for url in fresh.files)  # a real scan
    assert _describe(first.files) == _describe(fresh.files) == _describe(second.files)
    # The second took the kept scan (the same file objects), it did not scan again.
    shared = set(first.files) & set(second.files)
    assert shared and all(second.files[url] is first.files[url] for url in shared)


def test_a_changed_setting_gets_its_own_scan(static_files_scanned_once, settings, monkeypatch):
    before = WhiteNoiseMiddleware(lambda request: None)
    settings.STATIC_URL = "/elsewhere/"
    after = WhiteNoiseMiddleware(lambda request: None)
    assert not any(url.startswith("/elsewhere/") for url in before.files)
    assert any(url.startswith("/elsewhere/") for url in after.files)
    assert _describe(after.files) == _describe(_fresh(monkeypatch).files)
