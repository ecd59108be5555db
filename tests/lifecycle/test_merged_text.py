"""A merged memory that says the summarizer's text of its group (``merged_text: "summary"``;
issue 21 item 1, docs/lifecycle.md "Merged text"): proposed on a dry run, written at the
merge as a versioned edit of the survivor marked ``merge_text`` with the members it was
drawn ``from``, reverted by an unmerge and by a certified erasure of a member; a failing
summarizer merges nothing. The provider runs against the fake upstream on loopback
(tests/helpers/fake_upstream.py), whose quoting model answers with every sentence of its
sources, so the merged text differs from every member; the offline default is checked
against the extractive summarizer itself."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from apps.audit.models import AuditEntry
from apps.core.summarizer import SourceText
from apps.core.summarizer_extractive import ExtractiveSummarizer
from apps.lifecycle.models import ConsolidationRun
from apps.lifecycle.tasks import run_consolidation
from apps.memories.models import AgentRecord, Memory, MemoryVersion
from tests.helpers.erasure import erase_through_requests
from tests.helpers.fake_upstream import MODEL, Reply

#: Commits for real: the erasure's steps and the audit anchor, as certificates check them.
pytestmark = pytest.mark.django_db(transaction=True)
STAGING = ["The staging database runs PostgreSQL 15 on host db-2.",
           "Staging database: PostgreSQL 15, running on host db-2.",
           "Note: the staging database runs on PostgreSQL 15 (host db-2)."]
OTHERS = ["Our office is closed on public holidays.",
          "The mobile app is written in Kotlin and Swift."]
URL = "/api/v1/namespaces/alpha/consolidate"


@pytest.fixture
def corpus(agent) -> dict[str, str]:
    """Content -> id of every memory stored."""
    response = agent.post("/api/v1/memories/batch",
                          {"memories": [{"content": t} for t in STAGING + OTHERS]})
    assert response.status_code == 201, response.json()
    return {row["content"]: row["id"] for row in response.json()["results"]}


@pytest.fixture
def provider(provider_settings, upstream):
    """The OpenAI-compatible summarizer against the fake upstream: one retry, short waits."""
    provider_settings.MEMORYWEB_SUMMARIZER_RETRIES = 1
    return upstream


def _proposal(body: dict, corpus: dict[str, str]) -> dict:
    """The one proposal: the three STAGING paraphrases."""
    (proposal,) = body["proposals"]
    assert set(proposal["members"]) == {corpus[t] for t in STAGING}
    return proposal


def _expected(proposal: dict, texts: dict[str, str]) -> list[str]:
    """What the quoting model writes: each member's sentence, the survivor's first, as
    many as fit twice the longest member."""
    order = [proposal["survivor"], *(m for m in proposal["members"] if m != proposal["survivor"])]
    bound, kept = 2 * max(len(texts[m]) for m in order), []
    for text in (texts[m] for m in order):
        if len("\n".join([*kept, text])) <= bound:
            kept.append(text)
    return kept


def _history(memory_id: str) -> str:
    return json.dumps([v.changes for v in MemoryVersion.objects.filter(memory_id=memory_id)])


def test_the_offline_default_proposes_the_extractive_summary(team_admin, corpus):
    response = team_admin.post(URL, {"dry_run": True, "threshold": 0.85,
                                     "merged_text": "summary"})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["merged_text"] == "summary"
    proposal = _proposal(body, corpus)
    texts = {i: t for t, i in corpus.items()}
    order = [proposal["survivor"], *(m for m in proposal["members"] if m != proposal["survivor"])]
    summary = ExtractiveSummarizer().summarize(
        [SourceText(m, texts[m]) for m in order],
        max_chars=2 * max(len(texts[m]) for m in order)).text
    assert proposal["merged_content"] == summary
    assert not Memory.objects.filter(superseded_by__isnull=False).exists()
    assert not MemoryVersion.objects.filter(version__gt=1).exists()


def test_without_asking_the_survivor_keeps_its_own_text(team_admin, corpus, provider):
    body = team_admin.post(URL, {"dry_run": True, "threshold": 0.85}).json()
    proposal = _proposal(body, corpus)
    assert body["merged_text"] == "member"
    assert proposal["merged_content"] == {i: t for t, i in corpus.items()}[proposal["survivor"]]
    assert not provider.requests  # the summarizer is not asked


def test_applied_the_survivor_says_the_summary_as_a_marked_version(team_admin, agent, corpus,
                                                                   provider):
    texts = {i: t for t, i in corpus.items()}
    dry = _proposal(team_admin.post(URL, {"dry_run": True, "threshold": 0.85,
                                          "merged_text": "summary"}).json(), corpus)
    expected = "\n".join(_expected(dry, texts))
    assert dry["merged_content"] == expected and expected != texts[dry["survivor"]]
    asked = len(provider.requests)
    assert asked == 1

    response = team_admin.post(URL, {"dry_run": False, "threshold": 0.85,
                                     "merged_text": "summary"})
    assert response.status_code == 200, response.json()
    body = response.json()
    proposal = _proposal(body, corpus)
    assert proposal["applied"] is True and proposal["merged_content"] == expected
    survivor = Memory.objects.get(pk=proposal["survivor"])
    assert survivor.content == expected and survivor.version == 2
    change = survivor.versions.get(version=2).changes["content"]
    assert (change["before"], change["after"], change["by"], change["summarizer"]) == (
        texts[dry["survivor"]], expected, "merge_text", f"openai:{MODEL}")
    assert sorted(change["from"]) == sorted(set(dry["members"]) - {dry["survivor"]})
    assert Memory.objects.filter(superseded_by=survivor).count() == 2
    # Its words are recalled from the survivor; no agent is counted as corrected.
    shown = agent.get(f"/api/v1/memories/{survivor.pk}").json()
    assert shown["content"] == expected
    assert not AgentRecord.objects.filter(corrected__gt=0).exists()
    entry = AuditEntry.objects.filter(operation="memory.consolidate").get()
    assert entry.summary["merged_text"] is True
    assert AuditEntry.objects.filter(operation="memory.update",
                                     summary__by="merge_text").count() == 1


def test_unmerge_reverts_the_summary_and_the_tags(team_admin, agent, corpus, provider):
    texts = {i: t for t, i in corpus.items()}
    dry = _proposal(team_admin.post(URL, {"dry_run": True, "threshold": 0.85}).json(), corpus)
    tagged = next(m for m in dry["members"] if m != dry["survivor"])
    assert team_admin.patch(f"/api/v1/memories/{tagged}", {"tags": ["db"]}).status_code == 200
    body = team_admin.post(URL, {"dry_run": False, "threshold": 0.85,
                                 "merged_text": "summary"}).json()
    proposal = _proposal(body, corpus)
    survivor = proposal["survivor"]
    assert survivor == dry["survivor"] and "db" in Memory.objects.get(pk=survivor).tags
    assert Memory.objects.get(pk=survivor).content != texts[survivor]

    response = team_admin.post(f"/api/v1/memories/{survivor}/unmerge")
    assert response.status_code == 200, response.json()
    kept = Memory.objects.get(pk=survivor)
    assert kept.content == texts[survivor]
    assert not Memory.objects.filter(superseded_by__isnull=False).exists()
    assert [v.changes["content"]["by"] for v in kept.versions.order_by("version")
            if "content" in v.changes] == ["merge_text", "unmerge"]
    assert "db" not in (kept.tags or [])  # the tag came from a member: taken back too
    unmerged = AuditEntry.objects.filter(operation="memory.unmerge").get()
    assert unmerged.summary["text_reverted"] is True


def test_a_person_s_edit_after_the_summary_survives_unmerge(team_admin, agent, corpus,
                                                            provider):
    body = team_admin.post(URL, {"dry_run": False, "threshold": 0.85,
                                 "merged_text": "summary"}).json()
    survivor = _proposal(body, corpus)["survivor"]
    edited = "The staging database: PostgreSQL 15 on db-2 (checked by the team)."
    assert team_admin.patch(f"/api/v1/memories/{survivor}",
                            {"content": edited}).status_code == 200
    assert team_admin.post(f"/api/v1/memories/{survivor}/unmerge").status_code == 200
    assert Memory.objects.get(pk=survivor).content == edited


def test_erasing_a_member_reverts_the_summary_and_scrubs_it(team_admin, system_admin, corpus,
                                                            provider):
    texts = {i: t for t, i in corpus.items()}
    body = team_admin.post(URL, {"dry_run": False, "threshold": 0.85,
                                 "merged_text": "summary"}).json()
    proposal = _proposal(body, corpus)
    survivor = proposal["survivor"]
    summary = Memory.objects.get(pk=survivor).content
    erased = next(m for m in proposal["members"] if m != survivor and texts[m] in summary)

    certificate = erase_through_requests(team_admin, system_admin,
                                         {"namespace": "alpha", "ids": [erased]})

    kept = Memory.objects.get(pk=survivor)
    assert kept.content == texts[survivor]
    assert texts[erased] not in _history(survivor) and summary not in _history(survivor)
    assert {"memory": survivor, "change": "text_reverted"} in certificate["touched"][
        "merged_survivors"]
    found = team_admin.post("/api/v1/recall", {"query": texts[erased], "mode": "lexical",
                                               "k": 10})
    assert found.status_code == 200, found.content
    assert all(texts[erased] not in hit["content"] for hit in found.json()["results"])


def test_a_failing_summarizer_is_a_503_and_merges_nothing(team_admin, corpus, provider):
    provider.script = [Reply(status=500, body={"error": {"message": "upstream down"}})]
    response = team_admin.post(URL, {"dry_run": False, "threshold": 0.85,
                                     "merged_text": "summary"})
    assert response.status_code == 503, response.json()
    error = response.json()["error"]
    assert error["code"] == "unavailable" and "summarizer" in error["message"]
    assert len(provider.requests) == 2  # the call and its one retry
    assert not Memory.objects.filter(superseded_by__isnull=False).exists()
    assert not MemoryVersion.objects.filter(version__gt=1).exists()
    assert not AuditEntry.objects.filter(operation="memory.consolidate").exists()


def test_the_namespace_setting_is_the_default_and_a_request_overrides_it(team_admin, corpus,
                                                                         provider):
    response = team_admin.patch("/api/v1/namespaces/alpha",
                                {"consolidation": {"merged_text": "summary"}})
    assert response.status_code == 200, response.json()
    body = team_admin.post(URL, {"dry_run": True, "threshold": 0.85}).json()
    assert body["merged_text"] == "summary" and len(provider.requests) == 1
    body = team_admin.post(URL, {"dry_run": True, "threshold": 0.85,
                                 "merged_text": "member"}).json()
    assert body["merged_text"] == "member" and len(provider.requests) == 1


@pytest.mark.parametrize("body, field", [
    ({"merged_text": "rewrite"}, "merged_text"),
    ({"merged_text": ["summary"]}, "merged_text"),
])
def test_a_bad_merged_text_is_a_400_naming_it(team_admin, corpus, body, field):
    response = team_admin.post(URL, {"dry_run": False, **body})
    assert response.status_code == 400, response.json()
    assert field in json.dumps(response.json()["error"])
    assert not Memory.objects.filter(superseded_by__isnull=False).exists()


def test_a_bad_namespace_setting_is_a_400(team_admin, alpha):
    response = team_admin.patch("/api/v1/namespaces/alpha",
                                {"consolidation": {"merged_text": "rewrite"}})
    assert response.status_code == 400, response.json()
    assert "merged_text" in json.dumps(response.json()["error"])
    alpha.refresh_from_db()
    assert not (alpha.consolidation or {}).get("merged_text")


def _queued_dry_run(team_admin) -> str:
    with override_settings(MEMORYWEB_CONSOLIDATE_INLINE_MAX=3):
        response = team_admin.post(URL, {"dry_run": True, "threshold": 0.85,
                                         "merged_text": "summary"})
    assert response.status_code == 202, response.json()
    run_id = response.json()["id"]
    run_consolidation.call_local(run_id)
    stored = ConsolidationRun.objects.get(pk=run_id).result
    assert not any("merged_content" in p for p in stored["proposals"])
    assert not any(t in json.dumps(stored) for t in STAGING)  # never a memory's text
    return run_id


def test_a_queued_dry_run_shows_the_offline_summary_and_stores_no_text(team_admin, corpus):
    texts = {i: t for t, i in corpus.items()}
    run_id = _queued_dry_run(team_admin)
    shown = team_admin.get(f"/api/v1/consolidations/{run_id}").json()
    assert "merged_text_error" not in shown["result"], shown["result"]
    proposal = _proposal(shown["result"], corpus)
    order = [proposal["survivor"], *(m for m in proposal["members"] if m != proposal["survivor"])]
    assert proposal["merged_content"] == ExtractiveSummarizer().summarize(
        [SourceText(m, texts[m]) for m in order],
        max_chars=2 * max(len(texts[m]) for m in order)).text


def test_a_queued_dry_run_asks_a_remote_summarizer_nothing_on_reading(team_admin, corpus,
                                                                     provider):
    texts = {i: t for t, i in corpus.items()}
    run_id = _queued_dry_run(team_admin)
    asked = len(provider.requests)
    for _ in range(2):
        shown = team_admin.get(f"/api/v1/consolidations/{run_id}").json()
        assert "offline summarizer" in shown["result"]["merged_text_error"]
        proposal = _proposal(shown["result"], corpus)
        assert proposal["merged_content"] == texts[proposal["survivor"]]
    assert len(provider.requests) == asked


def test_the_seed_routes_and_mcp_pass_it_on(team_admin, corpus, provider):
    from apps.server.control import OPERATIONS

    texts = {i: t for t, i in corpus.items()}
    cmm = team_admin.post("/cmm/consolidate", {"dry_run": True, "threshold": 0.85,
                                               "merged_text": "summary"})
    assert cmm.status_code == 200, cmm.json()
    (group,) = cmm.json()["groups"]
    assert "\n" in group["gist"] and group["gist"] != texts[group["memoryweb_ids"][0]]
    v1 = team_admin.post("/v1/consolidate", {"dry_run": True, "threshold": 0.85,
                                             "merged_text": "summary"})
    assert v1.status_code == 200, v1.json()
    assert v1.json()["groups"][0]["content"] == group["gist"]
    mcp = OPERATIONS["mcp.call"]({"key": team_admin.raw, "tool": "consolidate",
                                  "args": [{"dry_run": True, "threshold": 0.85,
                                            "merged_text": "summary"}]})
    assert mcp["proposals"][0]["merged_content"] == group["gist"]


def test_unmerging_the_first_member_reverts_a_summary_built_on_its_summary(team_admin, agent):
    """S absorbs A (summary T1), then C (summary T2 of T1 and C). Unmerging A alone must
    take A's words out of S's text: T2 holds them through T1, so S says its own text
    again (C stays merged into it)."""
    from apps.lifecycle import merged_text
    from apps.lifecycle.consolidation import merge
    from apps.memories import writes
    from apps.tenancy.principal import Principal

    ids = [agent.post("/api/v1/memories", {"content": t}).json()["id"] for t in STAGING]
    s, a, c = ids
    admin = Principal.for_key(team_admin.key)

    def summarised(members: list[str], text: str) -> None:
        assert merge(admin, "alpha", [s, *members], s).merged == 1
        with writes.atomic() as write:
            survivor = Memory.objects.select_for_update().select_related("namespace").get(pk=s)
            merged_text.say(write, admin, survivor, text, members, summarizer="extractive")

    summarised([a], "T1: staging runs PostgreSQL 15 (from A).")
    summarised([c], "T2: T1 and what C said.")
    response = team_admin.post(f"/api/v1/memories/{a}/unmerge")
    assert response.status_code == 200, response.json()
    kept = Memory.objects.get(pk=s)
    assert kept.content == STAGING[0]
    assert Memory.objects.get(pk=c).superseded_by_id == kept.pk  # C stays merged
    assert Memory.objects.get(pk=a).superseded_by_id is None
    assert AuditEntry.objects.filter(operation="memory.unmerge").get().summary[
        "text_reverted"] is True


def test_a_summary_no_memory_may_hold_keeps_the_survivors_text(team_admin, corpus, provider):
    from tests.helpers.fake_upstream import chat

    sealed_looking = {"parts": [{"text": "mwenc1:AAAA staging database", "sources": [1],
                                 "quotes": ["staging database"]}]}
    provider.script = [Reply(body=chat(sealed_looking))]
    body = team_admin.post(URL, {"dry_run": False, "threshold": 0.85,
                                 "merged_text": "summary"}).json()
    proposal = _proposal(body, corpus)
    texts = {i: t for t, i in corpus.items()}
    assert proposal["applied"] is True and proposal["merged_content"] == texts[proposal["survivor"]]
    assert Memory.objects.get(pk=proposal["survivor"]).content == texts[proposal["survivor"]]
    assert not MemoryVersion.objects.filter(changes__content__by="merge_text").exists()
