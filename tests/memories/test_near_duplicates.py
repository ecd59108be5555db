"""Near-duplicates on ingest: linked, skipped or kept per namespace policy and threshold."""

from __future__ import annotations

import pytest

from apps.memories.models import Memory
from apps.tenancy.models import NearDuplicatePolicy

ORIGINAL = "The deploy key rotates every Monday."
NEAR = "The deploy key rotates every monday"  # cosine 0.96 with ORIGINAL (MiniLM)
UNRELATED = "Alice likes green tea."


def _policy(namespace, policy, threshold=None):
    namespace.near_duplicate_policy = policy
    namespace.near_duplicate_threshold = threshold
    namespace.save()


def test_link_is_the_default_and_reports_the_match(agent, alpha):
    first = agent.post("/api/v1/memories", {"content": ORIGINAL}).json()
    response = agent.post("/api/v1/memories", {"content": NEAR})
    assert response.status_code == 201
    body = response.json()
    assert body["duplicate"] is False
    assert body["near_duplicate_of"] == first["id"]
    assert 0.95 <= body["near_duplicate_similarity"] <= 1.0
    assert str(Memory.objects.get(pk=body["id"]).near_duplicate_of_id) == first["id"]
    assert agent.get(f"/api/v1/memories/{body['id']}").json()["near_duplicate_of"] == first["id"]


def test_unrelated_content_is_not_linked(agent, alpha):
    agent.post("/api/v1/memories", {"content": ORIGINAL})
    body = agent.post("/api/v1/memories", {"content": UNRELATED}).json()
    assert body["near_duplicate_of"] is None and "near_duplicate_similarity" not in body


def test_skip_returns_the_existing_memory_and_stores_nothing(agent, alpha):
    _policy(alpha, NearDuplicatePolicy.SKIP)
    first = agent.post("/api/v1/memories", {"content": ORIGINAL}).json()
    response = agent.post("/api/v1/memories", {"content": NEAR})
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == first["id"] and body["duplicate"] is True
    assert body["near_duplicate_similarity"] >= 0.95
    assert Memory.objects.filter(namespace=alpha).count() == 1


def test_keep_stores_without_linking(agent, alpha):
    _policy(alpha, NearDuplicatePolicy.KEEP)
    agent.post("/api/v1/memories", {"content": ORIGINAL})
    body = agent.post("/api/v1/memories", {"content": NEAR}).json()
    assert body["near_duplicate_of"] is None
    assert Memory.objects.filter(namespace=alpha).count() == 2


def test_the_namespace_threshold_decides(agent, alpha):
    _policy(alpha, NearDuplicatePolicy.LINK, threshold=0.99)
    agent.post("/api/v1/memories", {"content": ORIGINAL})
    assert agent.post("/api/v1/memories", {"content": NEAR}).json()["near_duplicate_of"] is None


def test_a_batch_links_to_an_earlier_item_of_the_same_batch(agent, alpha):
    body = agent.post("/api/v1/memories/batch",
                      {"memories": [{"content": ORIGINAL}, {"content": UNRELATED},
                                    {"content": NEAR}]}).json()
    first, unrelated, near = body["results"]
    assert body["created"] == 3
    assert near["near_duplicate_of"] == first["id"] and unrelated["near_duplicate_of"] is None


def test_a_batch_under_skip_stores_the_first_of_a_near_pair_only(agent, alpha):
    _policy(alpha, NearDuplicatePolicy.SKIP)
    body = agent.post("/api/v1/memories/batch",
                      {"memories": [{"content": ORIGINAL}, {"content": NEAR}]}).json()
    first, near = body["results"]
    assert near["id"] == first["id"] and near["duplicate"] is True
    assert body["created"] == 1 and Memory.objects.filter(namespace=alpha).count() == 1


def test_another_tenants_memory_is_never_a_near_duplicate(agent, outsider, alpha, beta):
    outsider.post("/api/v1/memories", {"content": ORIGINAL})
    body = agent.post("/api/v1/memories", {"content": NEAR}).json()
    assert body["near_duplicate_of"] is None


def test_deleting_the_original_unlinks_its_near_duplicates(agent, team_admin, alpha):
    first = agent.post("/api/v1/memories", {"content": ORIGINAL}).json()
    near = agent.post("/api/v1/memories", {"content": NEAR}).json()
    assert team_admin.delete(f"/api/v1/memories/{first['id']}").status_code == 204
    assert agent.get(f"/api/v1/memories/{near['id']}").json()["near_duplicate_of"] is None


@pytest.mark.parametrize("threshold", [0.0, 1.5])
def test_an_out_of_range_threshold_is_refused_by_the_model(alpha, threshold):
    from django.core.exceptions import ValidationError

    alpha.near_duplicate_threshold = threshold
    with pytest.raises(ValidationError, match="near_duplicate_threshold"):
        alpha.full_clean()
