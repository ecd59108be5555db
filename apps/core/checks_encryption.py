"""System check E014: encryption at rest's keys (apps/core/key_providers.py,
apps/core/namespace_keys.py, docs/encryption.md).

Fail closed: the server does not start when a namespace's data key cannot be unwrapped
(the key-encryption key is missing or another one) — never garbage, never plaintext
instead. Split from apps/core/checks.py, which imports this module so the check is
registered with the rest.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, register

from apps.core import key_providers, namespace_keys
from apps.core.checks import TAG, _error

NUMBER = 14


@register(TAG)
def check_encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    name = str(settings.MEMORYWEB_KEY_PROVIDER or "")
    if name not in ("file", "env") and not ("." in name or ":" in name):
        return [_error(f"MEMORYWEB_KEY_PROVIDER must be file, env or a dotted path to a "
                       f"KeyProvider; it is {name!r}.", NUMBER)]
    try:
        key_providers.provider(create=False).key_id()
    except key_providers.KeyUnavailable as exc:
        if name != "file" or namespace_keys.status():  # a file KEK is made on first use
            return [_error(f"the key-encryption key is unavailable: {exc}", NUMBER,
                           "Restore the key-encryption key (MEMORYWEB_KEK_PATH, MEMORYWEB_KEK "
                           "or the provider's) that wrapped the namespaces' data keys.")]
    except Exception as exc:  # a custom provider that fails to start
        return [_error(f"MEMORYWEB_KEY_PROVIDER={name!r} fails: {type(exc).__name__}: {exc}",
                       NUMBER)]
    return [_error(f"an encrypted namespace's data key cannot be opened: {problem}", NUMBER,
                   "The server refuses to serve encrypted data it cannot read; restore the "
                   "key-encryption key that wrapped it.")
            for problem in namespace_keys.problems()]
