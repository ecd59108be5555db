"""What both drop-in doors check the same way: query-string integers and the agent a
body names (it must be the key's own: identity comes from the credential)."""

from __future__ import annotations

from typing import Any

from apps.core.errors import InvalidInput
from apps.core.query_params import integer as int_param  # noqa: F401  (the doors' name for it)
from apps.tenancy.principal import Principal


def check_own_agent(principal: Principal, agent: Any, field: str) -> None:
    """A body may name the agent it writes as only if it is the key's own."""
    if agent is not None and agent != principal.agent_id:
        raise InvalidInput(f"{field} comes from the API key (this key stores as "
                           f"{principal.agent_id!r}); give that or leave it out.", field=field)
