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
