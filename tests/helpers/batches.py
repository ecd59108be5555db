"""Storing many memories through the REST batch route, 100 a request."""

from __future__ import annotations


def store_many(caller, contents: list[str], sessions: int = 0) -> list[str]:
    """Store ``contents`` as ``caller`` (a test client with a key), in batches of 100;
    with ``sessions``, memory i goes to session ``s{i % sessions}``. Their ids, in order."""
    ids = []
    for start in range(0, len(contents), 100):
        batch = [{"content": c, **({"session_id": f"s{(start + i) % sessions}"} if sessions else {})}
                 for i, c in enumerate(contents[start:start + 100])]
        response = caller.post("/api/v1/memories/batch", {"memories": batch})
        assert response.status_code == 201, response.content
        ids += [m["id"] for m in response.json()["results"]]
    return ids
