"""One representation of a memory for every door (apps/memories/representation.py), chosen
by the type of the service's result, and the REST serializers agreeing with it.

What a service found about a memory (a duplicate, a near-duplicate's similarity, read
through a grant) rides on a result object, never on the model instance.
"""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from apps.memories import services
from apps.memories.api.serializers import (
    MemorySerializer,
    RecallResultSerializer,
    StoredMemorySerializer,
)
from apps.memories.models import Memory
from apps.memories.recall import RecallHit
from apps.memories.representation import (
    GRANTOR_ONLY,
    hit_row,
    hit_rows,
    memory_row,
    stored_row,
)
from apps.memories.results import SharedMemory, StoredMemory, memory_of
from apps.tenancy.models import NearDuplicatePolicy
from apps.tenancy.principal import Principal

ORIGINAL = "The deploy key rotates every Monday."
NEAR = "The deploy key rotates every monday"  # cosine 0.96 with ORIGINAL (MiniLM)
APPS = Path(__file__).resolve().parents[2] / "apps"


@pytest.fixture
def recalled(stored) -> Memory:
    """A memory with the statistics and links a grantee must not see."""
    first = stored("The spare badge is in the blue drawer.")
    data = stored("rendering check", tags=["a"], metadata={"k": [1, {"x": None}]},
                  valid_from="2026-01-01T10:00:00+02:00")
    memory = Memory.objects.select_related("namespace").get(pk=data["id"])
    memory.access_count, memory.last_recalled_at = 3, timezone.now() - timedelta(hours=1)
    memory.near_duplicate_of_id = first["id"]
    memory.superseded_by_id = first["id"]  # merged into it by a consolidation
    return memory


def test_own_memory_serializer_equals_the_representation(recalled):
    row = memory_row(recalled)
    assert MemorySerializer(recalled).data == row
    assert list(row) == MemorySerializer.Meta.fields
    assert row["access_count"] == 3 and row["near_duplicate_of"] is not None


def test_shared_memory_leaves_out_the_grantors_statistics_by_type(recalled):
    own, shared = memory_row(recalled), memory_row(SharedMemory(recalled))
    assert MemorySerializer(SharedMemory(recalled)).data == shared
    assert list(shared) == list(own)
    assert {k for k in own if own[k] != shared[k]} == set(GRANTOR_ONLY)
    assert all(shared[k] is None for k in GRANTOR_ONLY)
    assert memory_of(SharedMemory(recalled)) is recalled and memory_of(recalled) is recalled


def test_recall_hits_serializer_equals_the_representation(recalled):
    own = RecallHit(recalled, 0.1234567, {"vector": {"raw": 0.5, "rank": 1, "contribution": 0.12}})
    shared = RecallHit(SharedMemory(recalled), 0.5)
    assert (own.shared, shared.shared) == (False, True)
    assert own.memory is recalled and shared.memory is recalled
    for hit in (own, shared):
        assert RecallResultSerializer(hit).data == hit_row(hit)
    rows = hit_rows([own, shared], explain=True)
    assert rows[0] == {**memory_row(recalled), "score": 0.123457, "shared": False,
                       "explain": own.parts}
    assert rows[1] == {**memory_row(SharedMemory(recalled)), "score": 0.5, "shared": True,
                       "explain": {}}
    assert set(rows[0]) == set(RecallResultSerializer.Meta.fields)


def test_duplicate_and_near_duplicate_results_serialize_as_the_representation(agent, alpha):
    alpha.near_duplicate_policy = NearDuplicatePolicy.LINK
    alpha.save()
    principal = Principal.for_key(agent.key)
    first = services.ingest(principal, {"content": ORIGINAL})
    again = services.ingest(principal, {"content": ORIGINAL})
    near = services.ingest(principal, {"content": NEAR})
    assert isinstance(first, StoredMemory) and not first.duplicate
    assert again.duplicate and again.memory.pk == first.memory.pk
    assert again.near_duplicate_similarity is None
    assert not near.duplicate and near.memory.near_duplicate_of_id == first.memory.pk
    assert 0.95 <= near.near_duplicate_similarity <= 1.0
    for result in (first, again, near):
        assert StoredMemorySerializer(result).data == stored_row(result)
    assert stored_row(again) == {**memory_row(first.memory), "duplicate": True}
    assert list(stored_row(near)) == StoredMemorySerializer.Meta.fields
    assert stored_row(near)["near_duplicate_similarity"] == round(near.near_duplicate_similarity, 6)


def test_a_batch_repeating_content_answers_without_copying_the_row(agent, alpha):
    results = services.ingest_many(Principal.for_key(agent.key),
                                   [{"content": "one"}, {"content": "two"}, {"content": "one"}])
    assert [r.duplicate for r in results] == [False, False, True]
    assert results[2].memory is results[0].memory  # one row, two answers about it


def test_service_state_is_not_on_the_model():
    memory = Memory()
    for name in ("duplicate", "near_duplicate_similarity", "shared_with_caller"):
        assert not hasattr(memory, name), name


def test_memory_row_refuses_what_is_not_a_memory(recalled):
    with pytest.raises(TypeError):
        memory_row(StoredMemory(recalled, duplicate=False))


def test_doors_format_memories_with_the_representation_not_the_rest_serializers():
    """The REST app's serializers are for the REST views and the schema only."""
    offenders = []
    for path in APPS.rglob("*.py"):
        if path.is_relative_to(APPS / "memories" / "api"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            if any(n.startswith("apps.memories.api") for n in names):
                offenders.append(str(path.relative_to(APPS)))
    assert not offenders
