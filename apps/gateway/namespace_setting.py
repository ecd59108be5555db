"""A namespace's ``gateway`` setting: its own upstreams (seed 003's per-namespace
overrides). The gateway's rule, stored on tenancy's namespace row and checked through
tenancy's registry (apps/tenancy/namespace_settings.py), registered from
``GatewayConfig.ready``::

    {"upstreams": {"openai": {"url": "https://example.openai.azure.com/openai/v1",
                              "key_file": "acme-openai.key"},
                   "anthropic": {"key_file": "acme-anthropic.key"}}}

Why only a system admin may change it: a key file names a credential on the server, and a
URL decides where every prompt of the namespace goes. A team admin who could pick another
namespace's key file would spend that namespace's upstream account; one who could point
the URL anywhere would send the namespace's prompts there.

Key files are bare names inside ``MEMORYWEB_GATEWAY_KEY_DIR`` (no path, no ``..``): the
key itself never enters the database, and no setting can make the server read a file
outside that directory (``/etc/…``, the data directory's secret key) and send it upstream
as a bearer token. The file is read at each request, so a rotated key needs no restart.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.validators import RegexValidator
from rest_framework import serializers

from apps.core.validation import StrictSerializer, validate

PROVIDERS = ("openai", "anthropic")
#: A key file's name: letters, digits, dot, dash, underscore; not starting with a dot.
_KEY_FILE_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
KEY_FILE_RE = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$"


def _ipv6_pattern() -> str:
    """RFC 3986's ``IPv6address`` as a regular expression (what ``urlsplit`` accepts)."""
    h16 = "[0-9A-Fa-f]{1,4}"
    octet = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"  # no leading zeros (ipaddress)
    ls32 = rf"({h16}:{h16}|{octet}(\.{octet}){{3}})"

    def words(n: int) -> str:  # n times "h16:"
        return f"({h16}:){{{n}}}"

    def head(n: int) -> str:  # [ *n( h16 ":" ) h16 ]
        return f"(({h16}:){{0,{n}}}{h16})?"

    return "(" + "|".join([
        f"{words(6)}{ls32}", f"::{words(5)}{ls32}", f"({h16})?::{words(4)}{ls32}",
        f"{head(1)}::{words(3)}{ls32}", f"{head(2)}::{words(2)}{ls32}",
        f"{head(3)}::{h16}:{ls32}", f"{head(4)}::{ls32}", f"{head(5)}::{h16}", f"{head(6)}::",
    ]) + ")"


#: A port urlsplit accepts: 0..65535.
_PORT = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
#: A base URL: http(s), a host name or IPv4 address (or [IPv6]), an optional port and
#: path; no credentials, query or fragment. In the schema too (its ``pattern``), so a
#: client (and schemathesis) knows the rule: every string it matches is accepted
#: (tests/gateway/test_rules.py checks that with generated URLs), since schemathesis
#: found ``[3d0]`` matching a looser pattern and then refused.
URL_RE = (rf"^https?://([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[{_ipv6_pattern()}\])(:{_PORT})?"
          r"(/[A-Za-z0-9._~%!$&'()*+,;=:@/-]*)?$")


class UpstreamOverride(StrictSerializer):
    """One provider's upstream for this namespace; a part left out is the server's."""

    url = serializers.CharField(
        required=False, max_length=2000, validators=[RegexValidator(
            URL_RE, "must be an http(s) base URL: a host, optional port and path; no "
            "credentials, query or fragment.")],
        help_text="The upstream's base URL for this namespace (as MEMORYWEB_GATEWAY_OPENAI_URL "
        "/ _ANTHROPIC_URL). The server's key is never sent to it: name a key_file, or clients "
        "bring their own key (X-Upstream-Authorization).")
    key_file = serializers.CharField(
        required=False, max_length=255, validators=[RegexValidator(
            KEY_FILE_RE, "must be a bare file name in MEMORYWEB_GATEWAY_KEY_DIR (letters, "
            "digits, '.', '-', '_'; no path).")],
        help_text="The name of a file in MEMORYWEB_GATEWAY_KEY_DIR holding this namespace's "
        "upstream key (read at each request; never stored in the database).")

    def validate_url(self, value: str) -> str:
        try:  # an invalid [IPv6] literal or a port above 65535 raises here
            parts = urlsplit(value.strip())
            parts.port  # noqa: B018 (read for its check)
        except ValueError as exc:
            raise serializers.ValidationError(f"is not a valid URL ({exc}).") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise serializers.ValidationError("must be an http(s) URL.")
        if parts.username or parts.password:
            raise serializers.ValidationError("must not hold credentials; name a key_file.")
        if parts.query or parts.fragment:
            raise serializers.ValidationError("must be a base URL, without query or fragment.")
        return value.strip().rstrip("/")

    def validate_key_file(self, value: str) -> str:
        if not value or value.startswith(".") or not set(value) <= _KEY_FILE_CHARS:
            raise serializers.ValidationError(
                "must be a bare file name in MEMORYWEB_GATEWAY_KEY_DIR (letters, digits, "
                "'.', '-', '_'; no path).")
        directory = settings.MEMORYWEB_GATEWAY_KEY_DIR
        if not directory:
            raise serializers.ValidationError(
                "per-namespace key files need MEMORYWEB_GATEWAY_KEY_DIR on the server.")
        path = Path(directory) / value
        if not (path.is_file() and os.access(path, os.R_OK)):
            raise serializers.ValidationError(
                f"no readable file {value!r} in MEMORYWEB_GATEWAY_KEY_DIR.")
        return value


class Upstreams(StrictSerializer):
    openai = UpstreamOverride(required=False)
    anthropic = UpstreamOverride(required=False)


#: What a request trace keeps (docs/gateway.md, "Traces"): nothing; ids, counts and
#: timings; or those and the recall query too.
TRACE_LEVELS = ("off", "metadata", "content")


class GatewaySettings(StrictSerializer):
    """A namespace's ``gateway`` setting. Empty: the server's upstreams and keys, no trace."""

    upstreams = Upstreams(
        required=False, help_text="Per-provider upstream URL and key file for this namespace "
        "(system admins only). See docs/gateway.md.")
    trace = serializers.ChoiceField(
        choices=TRACE_LEVELS, required=False,
        help_text="Keep a per-request trace of what was injected: off (default); metadata "
        "(memory ids, counts, mode, timings; no text); content (also the recall query, "
        "redacted). Team admins may change it.")


def validate_gateway_settings(value: Any) -> dict[str, Any]:
    """The ``gateway`` value checked and normalised (plain JSON, empty parts dropped)."""
    if value in (None, ""):
        return {}
    cleaned = validate(GatewaySettings, value, prefix="gateway")
    normal: dict[str, Any] = {}
    upstreams = {name: dict(part) for name, part in (cleaned.get("upstreams") or {}).items()
                 if part}
    if upstreams:
        normal["upstreams"] = upstreams
    if cleaned.get("trace", "off") != "off":
        normal["trace"] = cleaned["trace"]
    return normal


def upstreams_of(value: Any) -> dict[str, Any]:
    """The part of the setting only a system admin changes."""
    return dict((value or {}).get("upstreams") or {})


def trace_level(namespace: Any) -> str:
    """What this namespace's request traces keep (``off`` unless it opted in)."""
    return ((getattr(namespace, "gateway", None) or {}).get("trace")) or "off"


def override(namespace: Any, provider: str) -> dict[str, str]:
    """This namespace's override for ``provider`` ({} when it uses the server's)."""
    value = getattr(namespace, "gateway", None) or {}
    return dict((value.get("upstreams") or {}).get(provider) or {})
