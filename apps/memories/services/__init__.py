"""The memory service layer: every door (REST, WebSocket, MCP, admin, commands) calls these.

Each function takes the acting :class:`Principal`, validates its input with the
shared schemas, checks the role, writes SQL and the outbox in one transaction and
indexes after the commit. Doors only translate their protocol.

One module per use case, so each reads on its own: ``ingestion`` (store), ``reading``
(get, list, keyword lookup), ``editing`` (update, batched edits, revert), ``deletion``
(by id, agent or filter, and a whole namespace), ``combined`` (ingest, then recall) and
``events`` (conversation events: store a batch, list a session);
``access`` holds the visibility and archived-namespace checks they share. Recall is a
package of its own, :mod:`apps.memories.recall`. Doors import from this package
(``services.ingest``, ``from apps.memories.services import check_writable``). The
modules are not named after the functions they define (``ingestion``, not ``ingest``):
a re-exported function would shadow its module here, and a patch of
``apps.memories.services.ingestion._store`` must reach the module.
"""

from apps.memories.recall import RecallHit, RecallResult, recall
from apps.memories.results import SharedMemory, StoredEvent, StoredMemory
from apps.memories.services.access import check_writable, editable
from apps.memories.services.combined import IngestAndRecallResult, ingest_and_recall
from apps.memories.services.deletion import (
    delete,
    delete_by_agent,
    delete_many,
    delete_matching,
    delete_memories,
)
from apps.memories.services.editing import (
    BATCH_EDIT_CHUNK,
    BATCH_EDITABLE,
    EDITABLE_FIELDS,
    BatchEdit,
    edit_many,
    retag_many,
    revert,
    set_kind_many,
    state_at,
    update,
)
from apps.memories.services.events import list_session_events, store_events
from apps.memories.services.ingestion import ingest, ingest_many
from apps.memories.services.reading import (
    get,
    keyword_matches,
    lineage,
    list_memories,
    strength_of,
    versions,
)
from apps.tenancy.namespaces import delete_namespace  # tenancy's; kept here for the doors

__all__ = [
    "BATCH_EDITABLE",
    "BATCH_EDIT_CHUNK",
    "EDITABLE_FIELDS",
    "BatchEdit",
    "IngestAndRecallResult",
    "RecallHit",
    "RecallResult",
    "SharedMemory",
    "StoredEvent",
    "StoredMemory",
    "check_writable",
    "delete",
    "delete_by_agent",
    "delete_many",
    "delete_matching",
    "delete_memories",
    "delete_namespace",
    "edit_many",
    "editable",
    "get",
    "ingest",
    "ingest_and_recall",
    "ingest_many",
    "keyword_matches",
    "lineage",
    "list_memories",
    "list_session_events",
    "recall",
    "retag_many",
    "revert",
    "set_kind_many",
    "state_at",
    "store_events",
    "strength_of",
    "update",
    "versions",
]
