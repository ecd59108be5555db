"""What both drop-in doors check the same way: query-string integers and the agent a
body names (it must be the key's own: identity comes from the credential)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from apps.core.errors import InvalidInput
from apps.tenancy.principal import Principal

_DIGITS = re.compile(r"\d{1,9}", re.ASCII)


def int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """``?name=`` as an integer in ``low..high`` (ASCII digits only), else a 400."""
    raw = params.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise InvalidInput(f"{name} must be an integer from {low} to {high}.", field=name)
    return int(raw)


def check_own_agent(principal: Principal, agent: Any, field: str) -> None:
    """A body may name the agent it writes as only if it is the key's own."""
    if agent is not None and agent != principal.agent_id:
        raise InvalidInput(f"{field} comes from the API key (this key stores as "
                           f"{principal.agent_id!r}); give that or leave it out.", field=field)
