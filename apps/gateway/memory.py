"""The gateway's calls into the memory core, on worker threads (the Django ORM is sync):
who the caller is, what it may do, and what it recalls. Every call goes through the
service layer with the key's ``Principal``, as every door's does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from django.conf import settings
from django.db import close_old_connections

from apps.core.errors import ServiceError
from apps.memories import memory_modes, services
from apps.memories.memory_modes import ModeDecision
from apps.tenancy import budget
from apps.tenancy.principal import Principal
from apps.tenancy.services import authenticate_key, resolve_namespace

from . import screening
from .injection import Candidate

NAMESPACE_HEADER = "x-memory-namespace"
#: A service's refusal as the error ``type`` both SDK families know.
_ERROR_TYPES = {403: "permission_error", 404: "not_found_error"}


@dataclass(frozen=True)
class Admission:
    """A request let in: its principal, namespace and mode; or why it is refused."""

    principal: Principal | None = None
    namespace: object = None
    decision: ModeDecision | None = None
    #: Refused: (HTTP status, error type, message, extra response headers).
    refusal: tuple[int, str, str, dict[str, str]] | None = None


def admit(raw_key: str | None, headers: Mapping[str, str], with_memory: bool) -> Admission:
    """Authenticate ``raw_key`` (constant-time compare, the key cache), draw one unit from
    its rate budget, and (``with_memory``) resolve its namespace and memory mode."""
    close_old_connections()
    try:
        # fail_open: with the database down, a key this process knows is still known (its
        # namespace as remembered), so the request can be forwarded unchanged.
        key = authenticate_key(raw_key, fail_open=True) if raw_key else None
        if key is None:
            return Admission(refusal=(401, "authentication_error", "send an active MemoryWeb "
                                      "API key where your SDK sends the provider's key "
                                      "(Authorization: Bearer, or x-api-key for Anthropic).", {}))
        principal = Principal.for_key(key)
        verdict = budget.draw(principal.label)
        if not verdict.allowed:
            wait = verdict.retry_after_seconds
            return Admission(refusal=(429, "rate_limit_error", f"the rate limit ({verdict.rate}, "
                                      f"shared with every door) is used up; retry in {wait} s.",
                                      {"retry-after": str(wait)}))
        if not with_memory:
            return Admission(principal=principal)
        try:
            namespace = resolve_namespace(principal, headers.get(NAMESPACE_HEADER) or None)
            decision = memory_modes.decide(principal, namespace, headers)
        except ServiceError as exc:
            kind = _ERROR_TYPES.get(exc.status, "invalid_request_error")
            return Admission(refusal=(exc.status, kind, exc.message, {}))
        return Admission(principal=principal, namespace=namespace, decision=decision)
    finally:
        close_old_connections()


@dataclass
class Recalled:
    """What a recall offered: candidates that passed screening, and how many did not."""

    candidates: list[Candidate] = field(default_factory=list)
    screened_out: int = 0


def recall(admission: Admission, query: str) -> Recalled:
    """The namespace's memories that answer ``query`` (hybrid unless the namespace says
    otherwise; its recall settings; the minimum score), screened."""
    close_old_connections()
    try:
        namespace = admission.namespace
        defaults = getattr(namespace, "recall_defaults", None) or {}
        data: dict[str, object] = {"query": query, "k": settings.MEMORYWEB_GATEWAY_RECALL_K}
        if "mode" not in defaults:
            data["mode"] = "hybrid"
        if defaults.get("min_score") is None:
            data["min_score"] = settings.MEMORYWEB_GATEWAY_MIN_SCORE
        decision = admission.decision
        if decision is not None and decision.after is not None:
            data["filters"] = {"created_after": decision.after.isoformat()}
        result = services.recall(admission.principal, data, namespace=namespace.slug)
        recalled = Recalled()
        for hit in result.hits:
            memory = hit.memory
            if screening.flags(memory.content):
                recalled.screened_out += 1
                continue
            recalled.candidates.append(Candidate(str(memory.pk), memory.content, hit.score))
        return recalled
    finally:
        close_old_connections()
