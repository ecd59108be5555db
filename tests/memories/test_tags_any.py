"""The ``tags_any`` recall filter (seed 003's tag semantics): at least one of the tags,
in each channel (Chroma's where clause and the SQL keyword side)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("mode", ["vector", "lexical", "hybrid"])
def test_tags_any_matches_one_or_more_tags(agent, stored, mode):
    stored("blue whale in the ocean", tags=["animals", "sea"])
    stored("blue car in the garage", tags=["cars"])
    stored("blue paint on the fence", tags=["house"])

    def found(filters):
        response = agent.post("/api/v1/recall", {"query": "blue", "k": 10, "mode": mode,
                                                 "filters": filters})
        assert response.status_code == 200, response.content
        return sorted(row["content"].split()[1] for row in response.json()["results"])

    assert found({"tags_any": ["sea", "cars"]}) == ["car", "whale"]
    assert found({"tags_any": ["house"]}) == ["paint"]
    assert found({"tags_any": ["nothing"]}) == []
    assert found({"tags": ["animals"], "tags_any": ["sea", "house"]}) == ["whale"]
    assert found({"tags": ["animals", "house"]}) == []  # tags: every one of them


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
def test_an_edit_that_removes_a_tag_or_metadata_key_is_no_longer_found_by_it(
        agent, team_admin, stored, mode):
    """Chroma merges an upsert's metadata into the stored one; the removed keys must go."""
    memory = stored("the green door is locked at night", tags=["doors", "night"],
                    metadata={"floor": 3, "wing": "east"})
    edited = team_admin.patch(f"/api/v1/memories/{memory['id']}",
                              {"tags": ["doors"], "metadata": {"floor": 3}})
    assert edited.status_code == 200

    def found(filters):
        response = agent.post("/api/v1/recall", {"query": "green door", "mode": mode,
                                                 "filters": filters})
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert found({"tags": ["doors"]}) == [memory["id"]]
    assert found({"tags": ["night"]}) == []
    assert found({"tags_any": ["night"]}) == []
    assert found({"metadata": {"wing": "east"}}) == []
    assert found({"metadata": {"floor": 3}}) == [memory["id"]]
