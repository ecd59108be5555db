"""Which memory a caller may see or change, and the archived-namespace guard: the checks
that reading, editing, deleting and ingesting share, kept apart so that none of those
modules imports another for them."""

from __future__ import annotations

import uuid
from typing import Any

from apps.core.errors import InvalidInput, NotFound, PermissionDenied
from apps.core.roles import Action, allows
from apps.memories import sharing
from apps.memories.models import Memory, MemoryKind
from apps.tenancy.principal import Principal
from apps.tenancy.services import authorize, check_writable  # check_writable: tenancy's rule


def _pk(memory_id: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(memory_id))
    except ValueError:
        raise NotFound("memory not found.") from None


def _visible(principal: Principal, memory_id: Any, queryset) -> Memory:
    pk = _pk(memory_id)
    memory = queryset.for_principal(principal).select_related("namespace").filter(pk=pk).first()
    if memory is None:
        raise NotFound("memory not found.")
    return memory


def _shared(principal: Principal, memory_id: Any, queryset) -> Memory | None:
    """The memory if a live grant shares it with a namespace the principal reads."""
    condition = sharing.shared_with(principal)
    if condition is None:
        return None
    return queryset.filter(condition, pk=_pk(memory_id)).select_related("namespace").first()


def _editable(principal: Principal, memory_id: Any) -> Memory:
    """A memory to edit or delete: expired ones too (they are not served, but they exist).

    A memory shared with the caller is visible but read-only: 403, not 404.
    """
    try:
        memory = _visible(principal, memory_id, Memory.objects.all())
    except NotFound:
        if _shared(principal, memory_id, Memory.objects.all()) is not None:
            raise PermissionDenied("this memory is shared with your namespace read-only; "
                                   "only its own namespace may change it.") from None
        raise
    check_append_only(principal, memory.namespace_id, memory.is_event)
    authorize(principal, memory.namespace_id, Action.EDIT)
    check_writable(memory.namespace)
    return memory


def editable(principal: Principal, memory_id: Any) -> Memory:
    """A memory the principal may change (team admin of its own namespace, not archived):
    for the apps above that change memories through the write path (apps/lifecycle)."""
    return _editable(principal, memory_id)


#: Why an agent (or reader) may not change an event: said by every door the same way.
APPEND_ONLY = ("conversation events are append-only: a key with the agent role may add "
               "events (POST /api/v1/events) but not edit or delete them; a team admin may.")


def check_append_only(principal: Principal, namespace_id: int, is_event: bool) -> None:
    """Refuse (403 ``append_only``) an edit or delete of an event by a caller whose role in
    its namespace may not edit. Checked before the role itself, so the answer says why;
    one check here for every door (REST, MCP, the drop-in routes, the dashboard)."""
    role = principal.role_in(namespace_id)
    if is_event and role is not None and not allows(role, Action.EDIT):
        raise PermissionDenied(APPEND_ONLY, code="append_only")


def check_kind(memory: Memory, kind: str, field: str = "kind") -> None:
    """An event keeps kind ``event`` and only an event has it: the kind and the
    ``event_type`` never disagree (events come only through POST /api/v1/events)."""
    if memory.is_event and kind != MemoryKind.EVENT:
        raise InvalidInput("an event's kind stays 'event'.", field=field)
    if not memory.is_event and kind == MemoryKind.EVENT:
        raise InvalidInput("kind 'event' is for conversation events (POST /api/v1/events); "
                           "a memory cannot become one.", field=field)
