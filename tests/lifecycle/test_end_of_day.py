"""The end-of-day digest (issue 21, item 2): the timeline's day node with its grips, built
for that one day by a team admin — over REST, seed 000's /cmm/end_of_day and the MCP tool
end_of_day, all through apps/lifecycle/digest.py.

The history (tests/timeline/conftest.py) has 5 memories on Tue 2024-01-30 (3 segments),
2 on Wed 2024-01-31 and 3 on Fri 2024-02-02, all by agent-1.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from mcp.server.mcpserver.exceptions import ToolError

from apps.audit.models import AuditEntry
from apps.core.kinds import MemoryKind
from apps.core.roles import Role
from apps.core.summarizer_extractive import ExtractiveSummarizer
from apps.lifecycle import digest
from apps.mcp.backends import RestBackend, ServiceBackend
from apps.mcp.server import build_server
from apps.memories.models import ExternalId, Memory
from apps.tenancy.principal import Principal
from apps.timeline.build import build, release_lease, take_lease
from apps.timeline.models import Level, RollupNode, RollupState
from tests.helpers.callers import make_caller
from tests.timeline.conftest import HISTORY, Flaky, store

URL = "/api/v1/namespaces/alpha/end-of-day"
DAY = "2024-01-30"
ON_DAY = {name for name, (_, at, _) in HISTORY.items() if at.startswith(DAY)}


@pytest.fixture
def history(agent) -> dict[str, str]:
    return store(agent, HISTORY)


def _counts() -> tuple[int, int, int]:
    """What a call may add: audit entries, summary memories, timeline nodes."""
    return (AuditEntry.objects.count(), Memory.objects.filter(kind=MemoryKind.SUMMARY).count(),
            RollupNode.objects.count())


def _ok(response) -> dict:
    assert response.status_code == 200, response.content
    return response.json()


def test_a_team_admin_builds_that_day_only_with_grips_to_its_sources(alpha, history, team_admin):
    body = _ok(team_admin.post(URL, {"date": DAY}))

    assert (body["namespace"], body["date"], body["agent_id"]) == ("alpha", DAY, "")
    assert body["built"] is True and body["complete"] is True and body["empty"] is False
    node = body["node"]
    assert (node["level"], node["start"], node["end"]) == ("day", "2024-01-30T00:00:00Z",
                                                          "2024-01-31T00:00:00Z")
    assert node["source_count"] == 5 and node["summary"] and node["status"] == "ok"
    assert node["memory_id"] and node["id"] == str(RollupNode.objects.get(level="day").pk)
    # Every grip quotes a source of that day, and together they reach all five.
    sources = {history[name]: Memory.objects.get(pk=history[name]) for name in ON_DAY}
    assert {g["memory_id"] for g in body["grips"]} == set(sources)
    for grip in body["grips"]:
        assert grip["excerpt"] in sources[grip["memory_id"]].content
        assert grip["node"] == node["id"] and grip["text"] == node["summary"].split("\n")[grip["part"]]
    # Only that day: its three segments and the day, nothing above, no other day.
    assert sorted(RollupNode.objects.values_list("level", flat=True)) == ["day", "segment",
                                                                          "segment", "segment"]
    assert not RollupNode.objects.exclude(start__date=dt.date(2024, 1, 30)).exists()
    # Audited once, for the caller, with ids and counts only.
    entry = AuditEntry.objects.get(operation=digest.OPERATION)
    assert entry.actor == f"key:{team_admin.key.prefix}" and entry.namespace == "alpha"
    assert set(entry.record_ids) == {node["id"], node["memory_id"]}
    assert entry.summary["date"] == DAY and entry.summary["sources"] == 5
    assert entry.summary["built"] == {"segment": 3, "day": 1}
    assert "Dana" not in str(entry.summary) and "VPN" not in str(entry.summary)
    # The scheduled job still sees the tree as never built (a one-day build is no full one).
    assert RollupState.objects.get(namespace=alpha, agent_id="").last_finished_at is None


def test_the_same_day_again_builds_nothing_until_it_changes(alpha, history, team_admin, agent):
    first = _ok(team_admin.post(URL, {"date": DAY}))
    before = _counts()

    again = _ok(team_admin.post(URL, {"date": DAY}))
    assert again["built"] is False and again["node"] == first["node"]
    assert again["grips"] == first["grips"]
    assert _counts() == before  # no audit entry, no summary memory, no node

    added = store(agent, {"late": ("s9", "2024-01-30T22:00:00Z", "Sam closed the incident.")})
    changed = _ok(team_admin.post(URL, {"date": DAY}))
    assert changed["built"] is True and changed["node"]["id"] == first["node"]["id"]
    assert changed["node"]["source_count"] == 6
    assert changed["node"]["memory_id"] != first["node"]["memory_id"]  # replaced, not edited
    assert added["late"] in {g["memory_id"] for g in changed["grips"]}
    assert AuditEntry.objects.filter(operation=digest.OPERATION).count() == 2


def test_a_full_build_afterwards_keeps_the_days_node_and_adds_the_levels_above(alpha, history,
                                                                                team_admin):
    day = _ok(team_admin.post(URL, {"date": DAY}))["node"]
    report = build(alpha)
    assert report.ok and "day" in report.built and report.built["day"] == 2  # the other two
    assert {"week", "month", "year"} <= set(report.built)
    kept = RollupNode.objects.get(level=Level.DAY, start__date=dt.date(2024, 1, 30))
    assert str(kept.pk) == day["id"] and str(kept.memory_id) == day["memory_id"]
    assert kept.parent is not None and kept.parent.level == Level.WEEK


@pytest.mark.parametrize(("caller", "status"), [("reader", 403), ("agent", 403),
                                                ("outsider", 404), ("anonymous", 401)])
def test_only_team_and_system_admins_may_ask(alpha, history, callers, caller, status):
    response = callers[caller].post(URL, {"date": DAY})
    assert response.status_code == status, response.content
    assert not RollupNode.objects.exists() and not AuditEntry.objects.filter(
        operation=digest.OPERATION).exists()


def test_a_system_admin_names_any_namespace_a_team_admin_only_its_own(alpha, beta, history,
                                                                      team_admin, system_admin):
    assert team_admin.post("/api/v1/namespaces/beta/end-of-day", {}).status_code == 404
    assert team_admin.post("/api/v1/namespaces/nowhere/end-of-day", {}).status_code == 404
    assert _ok(system_admin.post(URL, {"date": DAY}))["node"]["source_count"] == 5
    beta_admin = make_caller(Role.ADMIN, beta, "beta-admin")
    assert beta_admin.post(URL, {"date": DAY}).status_code == 404


def test_an_agents_own_digest_holds_its_memories_only(alpha, history, team_admin):
    other = make_caller(Role.AGENT, alpha, "agent-2")
    theirs = store(other, {"theirs": ("s7", "2024-01-30T15:00:00Z", "Kim renewed the TLS cert.")})

    mine = _ok(team_admin.post(URL, {"date": DAY, "agent_id": "agent-1"}))
    assert mine["agent_id"] == "agent-1" and mine["node"]["agent_id"] == "agent-1"
    assert mine["node"]["source_count"] == 5
    assert {g["memory_id"] for g in mine["grips"]} == {history[name] for name in ON_DAY}
    summary = Memory.objects.get(pk=mine["node"]["memory_id"])
    assert summary.agent_id == "agent-1" and summary.content.startswith("Day of agent agent-1")
    assert not RollupNode.objects.filter(agent_id="").exists()  # the namespace's tree untouched

    kims = _ok(team_admin.post(URL, {"date": DAY, "agent_id": "agent-2"}))
    assert [g["memory_id"] for g in kims["grips"]] == [theirs["theirs"]]
    whole = _ok(team_admin.post(URL, {"date": DAY}))
    assert whole["node"]["source_count"] == 6
    nobody = _ok(team_admin.post(URL, {"date": DAY, "agent_id": "nobody"}))
    assert nobody["empty"] is True and nobody["node"] is None and nobody["grips"] == []


@pytest.mark.parametrize(("body", "field"), [
    ({"date": "2024-1-30"}, "date"),
    ({"date": "20240130"}, "date"),
    ({"date": "yesterday"}, "date"),
    ({"date": "2024-02-30"}, "date"),
    ({"date": "2024-01-30T00:00:00Z"}, "date"),
    ({"date": "0000-12-31"}, "date"),
    ({"date": 20240130}, "date"),
    ({"date": None}, "date"),
    ({"date": "2999-01-01"}, "date"),
    ({"agent_id": "no spaces"}, "agent_id"),
    ({"agent_id": "agent-1\n"}, "agent_id"),
    ({"agent_id": ""}, "agent_id"),
    ({"agent_id": 7}, "agent_id"),
    ({"day": DAY}, "day"),
    ({"date": DAY, "namespace": "alpha"}, "namespace"),
])
def test_bad_input_is_a_400_naming_the_field_and_builds_nothing(alpha, history, team_admin,
                                                                body, field):
    response = team_admin.post(URL, body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field, response.json()
    assert not RollupNode.objects.exists()


def test_a_day_is_never_after_today_and_inside_the_covered_years(alpha, team_admin, monkeypatch):
    tomorrow = (timezone.now() + dt.timedelta(days=1)).date().isoformat()
    refused = team_admin.post(URL, {"date": tomorrow}).json()["error"]
    assert refused["field"] == "date" and "is after today" in refused["message"]
    # Were the clock at the end of the calendar, 9999 would still be refused: the timeline
    # covers the years 1 to 9998.
    monkeypatch.setattr(digest, "today", lambda: dt.date(9999, 6, 1))
    late = team_admin.post(URL, {"date": "9999-01-02"}).json()["error"]
    assert late["field"] == "date" and "years 1 to 9998" in late["message"]
    assert not RollupNode.objects.exists()


def test_today_is_the_default_and_is_not_complete(alpha, agent, team_admin):
    stored = agent.post("/api/v1/memories", {"content": "The release train leaves at noon."})
    body = _ok(team_admin.post(URL))  # no body at all
    today = timezone.now().date().isoformat()
    assert body["date"] == today and body["complete"] is False and body["built"] is True
    assert [g["memory_id"] for g in body["grips"]] == [stored.json()["id"]]
    assert _ok(team_admin.post(URL, {}))["built"] is False


def test_a_day_without_memories_is_an_empty_digest(alpha, history, team_admin):
    before = _counts()
    body = _ok(team_admin.post(URL, {"date": "2024-01-29"}))
    assert body == {"namespace": "alpha", "date": "2024-01-29", "agent_id": "", "built": False,
                    "complete": True, "empty": True, "node": None, "grips": []}
    assert _counts() == before  # nothing built, nothing audited


def test_a_day_whose_memories_were_deleted_loses_its_digest(alpha, history, team_admin):
    built = _ok(team_admin.post(URL, {"date": "2024-01-31"}))
    for name in ("date", "venue"):
        assert team_admin.delete(f"/api/v1/memories/{history[name]}").status_code == 204
    gone = _ok(team_admin.post(URL, {"date": "2024-01-31"}))
    assert gone["built"] is True and gone["empty"] is True and gone["node"] is None
    assert not RollupNode.objects.filter(pk=built["node"]["id"]).exists()
    assert not Memory.objects.filter(pk=built["node"]["memory_id"]).exists()
    entry = AuditEntry.objects.filter(operation=digest.OPERATION).order_by("-seq").first()
    assert entry.summary["removed"] == 2 and entry.record_ids == []  # the segment and the day


def test_a_busy_timeline_is_a_409_with_a_retry_hint(alpha, history, team_admin):
    token = take_lease(alpha, "")
    try:
        response = team_admin.post(URL, {"date": DAY})
    finally:
        release_lease(alpha, "", token)
    assert response.status_code == 409 and response.json()["error"]["code"] == "busy"
    assert response["Retry-After"] == str(digest.RETRY_AFTER_SECONDS)
    assert "Retry in" in response.json()["error"]["message"]
    assert not RollupNode.objects.exists()
    assert _ok(team_admin.post(URL, {"date": DAY}))["built"] is True  # free again


def test_an_archived_namespace_is_refused(alpha, history, team_admin):
    alpha.archived_at = timezone.now()
    alpha.save()
    response = team_admin.post(URL, {"date": DAY})
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"
    assert not RollupNode.objects.exists()


def test_a_failing_summariser_is_a_503_that_keeps_the_previous_digest(alpha, history, agent,
                                                                     team_admin, monkeypatch):
    first = _ok(team_admin.post(URL, {"date": DAY}))
    store(agent, {"late": ("s1", "2024-01-30T11:05:00Z", "The budget needs sign-off by Friday.")})
    failing = Flaky(lambda sources: True)
    monkeypatch.setattr("apps.core.summarizer.get_summarizer", lambda: failing)
    before = _counts()
    response = team_admin.post(URL, {"date": DAY})
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "unavailable"
    assert "429 Too Many Requests" in response.json()["error"]["message"]
    assert failing.calls == 1 and _counts() == before
    kept = RollupNode.objects.get(level=Level.DAY)
    assert str(kept.memory_id) == first["node"]["memory_id"] and kept.source_count == 5
    monkeypatch.setattr("apps.core.summarizer.get_summarizer", ExtractiveSummarizer)
    assert _ok(team_admin.post(URL, {"date": DAY}))["node"]["source_count"] == 6


def test_asking_opts_the_day_in_even_when_scheduled_rollups_are_off(settings, alpha, history,
                                                                    team_admin):
    settings.MEMORYWEB_ROLLUPS_SCHEDULED = False
    alpha.rollups = {"enabled": False}
    alpha.save()
    body = _ok(team_admin.post(URL, {"date": DAY}))
    summary = Memory.objects.get(pk=body["node"]["memory_id"])
    assert summary.kind == MemoryKind.SUMMARY and summary.content.startswith("Day 2024-01-30")


# --- seed 000's /cmm/end_of_day ----------------------------------------------------------

def test_cmm_end_of_day_answers_the_digest_with_seed_000_numbers(alpha, history, team_admin,
                                                                 reader):
    body = _ok(team_admin.post("/cmm/end_of_day", {"date": DAY, "agent_id": None}))
    assert (body["date"], body["namespace"], body["agent_id"]) == (DAY, "alpha", "")
    assert body["built"] is True and body["complete"] is True and body["source_count"] == 5
    node = RollupNode.objects.get(level="day")
    assert body["node_id"] == str(node.pk) and body["summary"] == node.summary
    assert body["memoryweb_memory_id"] == str(node.memory_id)
    numbers = dict(ExternalId.objects.filter(namespace=alpha, system="cmm")
                   .values_list("memory_id", "external_id"))
    assert {str(pk) for pk in numbers} >= {history[name] for name in ON_DAY}
    for grip in body["grips"]:
        assert isinstance(grip["id"], int)
        assert str(numbers[Memory.objects.get(pk=grip["memoryweb_id"]).pk]) == str(grip["id"])
        shown = reader.get(f"/cmm/memory/{grip['id']}").json()
        assert grip["excerpt"] in shown["gist"] and grip["part"] < len(node.parts)
    summary = reader.get(f"/cmm/memory/{body['memory_id']}").json()
    assert summary["kind"] == "summary" and summary["memoryweb_id"] == str(node.memory_id)
    again = _ok(team_admin.post("/cmm/end_of_day", {"date": DAY}))
    assert again["built"] is False and again["grips"] == body["grips"]
    assert again["memory_id"] == body["memory_id"]


def test_cmm_end_of_day_roles_defaults_and_refusals(alpha, history, callers):
    before = _counts()
    for name, status in (("reader", 403), ("agent", 403), ("anonymous", 401)):
        assert callers[name].post("/cmm/end_of_day", {}).status_code == status, name
    assert callers["outsider"].post("/cmm/end_of_day?namespace=alpha", {}).status_code == 404
    assert callers["outsider"].post("/cmm/end_of_day", {"namespace": "alpha"}).status_code == 404
    for body, field in (({"day": DAY}, "day"), ({"date": "30/01/2024"}, "date"),
                        ({"agent_id": "a b"}, "agent_id"), ([DAY], None)):
        refused = callers["admin"].post("/cmm/end_of_day", body)
        assert refused.status_code == 400 and refused.json()["error"].get("field") == field
    assert _counts() == before
    # Null or "" is the default, as seed 000's clients send it: today, the whole namespace.
    today = _ok(callers["admin"].post("/cmm/end_of_day", {"date": "", "agent_id": ""}))
    assert today["date"] == timezone.now().date().isoformat() and today["complete"] is False
    assert today["empty"] is True and today["memory_id"] is None and today["grips"] == []
    system = callers["system"]
    assert system.post("/cmm/end_of_day", {"date": DAY}).status_code == 400  # names none
    assert _ok(system.post("/cmm/end_of_day?namespace=alpha", {"date": DAY}))["built"] is True


def test_cmm_end_of_day_says_when_to_retry(alpha, history, team_admin):
    token = take_lease(alpha, "")
    try:
        response = team_admin.post("/cmm/end_of_day", {"date": DAY})
    finally:
        release_lease(alpha, "", token)
    assert response.status_code == 409 and response.json()["error"]["code"] == "busy"
    assert response["Retry-After"] == str(digest.RETRY_AFTER_SECONDS)


# --- the MCP tool end_of_day -------------------------------------------------------------

def _principal(caller) -> Principal:
    return Principal.for_key(caller.key)


def _payload(result) -> dict:
    assert not result.is_error, result.content
    return json.loads(result.content[0].text)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_layer", "close_sync_thread_connections")
async def test_the_mcp_tool_builds_the_digest_for_a_team_admin(alpha, history, team_admin, agent):
    admin = await sync_to_async(_principal)(team_admin)
    server = build_server(lambda ctx: ServiceBackend(admin))
    tool = {t.name: t for t in await server.list_tools()}["end_of_day"]
    assert tool.annotations.idempotent_hint and not tool.annotations.read_only_hint
    assert set(tool.input_schema["properties"]) == {"date", "agent_id"}

    first = _payload(await server.call_tool("end_of_day", {"date": DAY}))
    assert first["built"] is True and first["node"]["source_count"] == 5
    assert {g["memory_id"] for g in first["grips"]} == {history[name] for name in ON_DAY}
    again = _payload(await server.call_tool("end_of_day", {"date": DAY}))
    assert again["built"] is False and again["node"]["id"] == first["node"]["id"]
    own = _payload(await server.call_tool("end_of_day", {"date": DAY, "agent_id": "agent-1"}))
    assert own["node"]["agent_id"] == "agent-1"

    with pytest.raises(ToolError, match="invalid: date must be a day as YYYY-MM-DD"):
        await server.call_tool("end_of_day", {"date": "30 January"})
    helper = await sync_to_async(_principal)(agent)
    theirs = build_server(lambda ctx: ServiceBackend(helper))
    with pytest.raises(ToolError, match="permission_denied"):
        await theirs.call_tool("end_of_day", {"date": DAY})


def test_the_mcp_tool_runs_beside_a_server_through_its_admin_socket(alpha, history, team_admin):
    """What ``manage.py mcp`` beside a running server sends (ServerBackend): the socket's
    ``mcp.call`` checks the key and runs the tool as its principal."""
    from apps.server.control import MCP_TOOLS, OPERATIONS

    assert "end_of_day" in MCP_TOOLS
    answer = OPERATIONS["mcp.call"]({"key": team_admin.raw, "tool": "end_of_day",
                                     "args": [DAY, None]})
    assert answer["built"] is True and answer["node"]["source_count"] == 5


@pytest.mark.django_db(transaction=True)
def test_the_mcp_proxy_asks_the_rest_route(alpha, history, team_admin, reader, live_server):
    proxy = RestBackend(live_server.url, team_admin.raw)
    body = proxy.end_of_day(DAY, None)
    assert body["built"] is True and body["namespace"] == "alpha" and body["date"] == DAY
    assert proxy.end_of_day(DAY, None)["built"] is False
    with pytest.raises(ToolError, match="permission_denied"):
        RestBackend(live_server.url, reader.raw).end_of_day(DAY, None)
    with pytest.raises(ToolError, match="invalid"):
        proxy.end_of_day("tomorrow", None)


@pytest.mark.parametrize("body", ["null", "[]", "3"])
def test_a_body_that_is_no_object_is_a_400(alpha, team_admin, body):
    response = team_admin.client.post("/api/v1/namespaces/alpha/end-of-day", body,
                                      content_type="application/json")
    assert response.status_code == 400, response.content
    assert "JSON object" in response.json()["error"]["message"]
