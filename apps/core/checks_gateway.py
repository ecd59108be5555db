"""System check E011: the memory gateway's settings (apps/gateway, docs/gateway.md).

Split from apps/core/checks.py (which imports this module, so the check is registered with
the rest) to keep each under a screenful of sections; the helpers are that module's.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, register
from django.core.checks import Warning as CheckWarning

from apps.core.checks import _LOOPBACK_HOSTS, TAG, Bound, _bounded, _error, _without_query

# --- E011: the memory gateway ----------------------------------------------------------------

GATEWAY_NUMBERS: dict[str, tuple[Bound, str]] = {
    "MEMORYWEB_GATEWAY_RECALL_BUDGET_MS": (Bound(low=1, high=60_000, integer=True),
                                           "Milliseconds recall may take before the request "
                                           "is forwarded unchanged (300 is the default)."),
    "MEMORYWEB_GATEWAY_KEY_GRACE_SECONDS": (Bound(low=0, high=86_400, integer=True),
                                            "Seconds a key the gateway has seen is admitted "
                                            "while the database is down (3600 is the default; "
                                            "0: never without the database)."),
    "MEMORYWEB_GATEWAY_RECALL_K": (Bound(low=1, high=100, integer=True),
                                   "Memories recalled per request at most (8 is the default)."),
    "MEMORYWEB_GATEWAY_MEMORY_SHARE": (Bound(low=0, high=0.5, above=True),
                                       "The share of the model's context window memories may "
                                       "fill (0.10 is the default)."),
    "MEMORYWEB_GATEWAY_MIN_SCORE": (Bound(low=0, high=1),
                                    "Hybrid recall scores are 0..1 (0.3 is the default)."),
    "MEMORYWEB_GATEWAY_MIN_SIMILARITY": (Bound(low=0, high=1),
                                         "A cosine similarity, 0..1 (0.35 is the default; 0: "
                                         "the fused score alone decides)."),
    "MEMORYWEB_GATEWAY_TIMEOUT": (Bound(low=0, high=3600, above=True),
                                  "Seconds to wait for the upstream (600 is the default)."),
    "MEMORYWEB_GATEWAY_EXTRACTOR_TIMEOUT": (Bound(low=0, high=600, above=True),
                                            "Seconds to wait for the extraction model (30 is "
                                            "the default)."),
    "MEMORYWEB_GATEWAY_PROMOTE_AFTER": (Bound(low=1, high=100, integer=True),
                                        "Sightings that promote a quarantined fact (2 is the "
                                        "default)."),
    "MEMORYWEB_GATEWAY_TRACE_DAYS": (Bound(low=1, high=365, integer=True),
                                     "Days a gateway request trace is kept (7 is the "
                                     "default)."),
}


@register(TAG)
def check_gateway(app_configs=None, **kwargs) -> list[CheckMessage]:
    """The gateway's upstreams and numbers. An empty URL is allowed (that route answers
    503); a set key file must be readable, so a typo stops the start instead of every
    request going upstream without a key."""
    errors: list[CheckMessage] = []
    for name, (bound, hint) in GATEWAY_NUMBERS.items():
        errors += _bounded(name, getattr(settings, name), bound, 11, hint)
    for provider in ("OPENAI", "ANTHROPIC"):
        url_name = f"MEMORYWEB_GATEWAY_{provider}_URL"
        file_name = f"MEMORYWEB_GATEWAY_{provider}_KEY_FILE"
        url, key_file = getattr(settings, url_name), getattr(settings, file_name)
        parts = urlsplit(url) if isinstance(url, str) and url else None
        if url and (parts is None or parts.scheme not in ("http", "https") or not parts.hostname):
            errors.append(_error(f"{url_name} must be an http(s) URL; it is "
                                 f"{_without_query(url)!r}.", 11))
        elif parts is not None and (parts.username or parts.password):
            errors.append(_error(f"{url_name} must not hold credentials; put the key in a "
                                 f"file named by {file_name}.", 11))
        elif (parts is not None and key_file and parts.scheme == "http"
              and parts.hostname not in _LOOPBACK_HOSTS):
            errors.append(CheckWarning(
                f"{url_name}={_without_query(url)!r} is plain HTTP to another machine: the "
                "upstream key and every prompt travel unencrypted.",
                hint="Use https, or a proxy on this machine.", id=f"{TAG}.W011"))
        if key_file and not (os.path.isfile(key_file) and os.access(key_file, os.R_OK)):
            errors.append(_error(f"{file_name} must name a readable file holding the upstream "
                                 f"key; {key_file!r} is not one.", 11))
    errors += _gateway_extractor()
    key_dir = settings.MEMORYWEB_GATEWAY_KEY_DIR
    if key_dir and not (os.path.isdir(key_dir) and os.access(key_dir, os.R_OK | os.X_OK)):
        errors.append(_error("MEMORYWEB_GATEWAY_KEY_DIR must name a readable directory of "
                             f"per-namespace upstream key files; {key_dir!r} is not one.", 11))
    return errors


def _gateway_extractor() -> list[CheckMessage]:
    """The learning extractor: a known name; ``openai`` (or ``auto`` with a URL) needs an
    http(s) URL without credentials and, when set, a readable key file."""
    name = settings.MEMORYWEB_GATEWAY_EXTRACTOR
    if name not in ("auto", "offline", "openai"):
        return [_error(f"MEMORYWEB_GATEWAY_EXTRACTOR must be auto, offline or openai; it is "
                       f"{name!r}.", 11)]
    errors: list[CheckMessage] = []
    key_file = settings.MEMORYWEB_GATEWAY_EXTRACTOR_KEY_FILE
    if key_file and not (os.path.isfile(key_file) and os.access(key_file, os.R_OK)):
        errors.append(_error("MEMORYWEB_GATEWAY_EXTRACTOR_KEY_FILE must name a readable file "
                             f"holding the extractor's key; {key_file!r} is not one.", 11))
    url = settings.MEMORYWEB_GATEWAY_EXTRACTOR_URL
    if name == "offline" or (name == "auto" and not url):  # auto without one: see extract.py
        return errors
    parts = urlsplit(url) if isinstance(url, str) and url else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        errors.append(_error("MEMORYWEB_GATEWAY_EXTRACTOR=openai needs "
                             "MEMORYWEB_GATEWAY_EXTRACTOR_URL, an http(s) base URL; it is "
                             f"{_without_query(url or '')!r}.", 11))
    elif parts.username or parts.password:
        errors.append(_error("MEMORYWEB_GATEWAY_EXTRACTOR_URL must not hold credentials; put "
                             "the key in MEMORYWEB_GATEWAY_EXTRACTOR_KEY_FILE.", 11))
    if not settings.MEMORYWEB_GATEWAY_EXTRACTOR_MODEL:
        errors.append(_error("MEMORYWEB_GATEWAY_EXTRACTOR=openai needs "
                             "MEMORYWEB_GATEWAY_EXTRACTOR_MODEL.", 11))
    return errors
