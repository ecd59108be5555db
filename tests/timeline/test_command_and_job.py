"""``manage.py rollup`` (incremental, --rebuild, --agent, failures), the scheduled
``build_rollups`` job (due namespaces, pause and resume like every job), the namespace
``rollups`` setting's checker, the store in the registry and the MCP proxy backend."""

from __future__ import annotations

from io import StringIO
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command

from apps.core.errors import InvalidInput
from apps.memories import stores
from apps.ops import jobs
from apps.tenancy import namespace_settings
from apps.tenancy.models import Namespace
from apps.timeline import build as build_module
from apps.timeline import tasks
from apps.timeline.models import RollupNode, RollupState
from apps.timeline.namespace_setting import Schedule, schedule_of, validate_rollup_settings
from apps.timeline.tasks import due_trees
from tests.timeline.conftest import COUNTS, Flaky


def _rollup(*args: str) -> str:
    out = StringIO()
    call_command("rollup", *args, stdout=out)
    return out.getvalue()


def test_the_command_builds_then_only_what_changed_then_everything_with_rebuild(
        alpha, history, team_admin):
    out = _rollup("--namespace", "alpha")
    assert "alpha: built segment 6, day 3, week 1, month 2, year 1; 0 unchanged" in out
    assert "alpha: built nothing; 7 unchanged, 0 removed" in _rollup("--namespace", "alpha")
    team_admin.patch(f"/api/v1/memories/{history['rota']}", {"content": "The rota is weekly now."})
    # The other two days, the Feb 2 segment of session s4 and January: unchanged.
    assert "built segment 1, day 1, week 1, month 1, year 1; 4 unchanged" in _rollup(
        "--namespace", "alpha")
    before = dict(RollupNode.objects.values_list("pk", "revision"))
    assert "built segment 6, day 3, week 1, month 2, year 1" in _rollup(
        "--namespace", "alpha", "--rebuild")
    assert all(revision == before[pk] + 1
               for pk, revision in RollupNode.objects.values_list("pk", "revision"))


def test_the_command_builds_an_agents_timeline_and_refuses_bad_input(alpha, history, capsys):
    assert "alpha/agent-1: built segment 6" in _rollup("--namespace", "alpha", "--agent", "agent-1")
    assert RollupNode.objects.filter(agent_id="agent-1").count() == sum(COUNTS.values())
    with pytest.raises(CommandError, match="no namespace 'nope'"):
        _rollup("--namespace", "nope")
    with pytest.raises(CommandError, match="not an agent id"):
        _rollup("--namespace", "alpha", "--agent", "no spaces")
    with pytest.raises(CommandError, match="required: --namespace"):
        _rollup()
    with pytest.raises(SystemExit):
        call_command("rollup", "--help")
    help_text = capsys.readouterr().out
    assert "--rebuild" in help_text and "incremental" in help_text.lower()


def test_the_command_reports_nodes_it_could_not_build_and_fails(alpha, history, monkeypatch):
    import apps.core.summarizer as summarizer_module

    monkeypatch.setattr(summarizer_module, "get_summarizer", lambda: Flaky(
        lambda sources: any("Berlin" in s.text for s in sources)))
    with pytest.raises(CommandError, match=r"2 node\(s\) not built.*retry") as failed:
        _rollup("--namespace", "alpha")
    assert "429" in str(failed.value)
    monkeypatch.undo()
    assert "built segment 2, day 2, week 1, month 1, year 1" in _rollup("--namespace", "alpha")


def test_an_archived_namespace_is_not_built(alpha, history):
    Namespace.objects.filter(pk=alpha.pk).update(archived_at="2024-01-01T00:00:00Z")
    with pytest.raises(CommandError, match="archived"):
        _rollup("--namespace", "alpha")


def _conversation(caller, session: str = "cc-1") -> None:
    response = caller.post("/api/v1/events", {"events": [
        {"id": f"{session}-1", "event_type": "user_message", "session_id": session,
         "occurred_at": "2024-04-02T08:00:00Z", "text": "Why does the export time out?"},
        {"id": f"{session}-2", "event_type": "assistant_message", "session_id": session,
         "occurred_at": "2024-04-02T08:01:00Z", "text": "The audit query lacks an index."}]})
    assert response.status_code in (200, 201), response.content


def test_the_job_builds_due_namespaces_and_pauses_like_every_job(
        alpha, beta, agent, outsider, settings, monkeypatch):
    assert jobs.JOBS["build_rollups"].run.__module__ == "apps.timeline.tasks"
    outsider.post("/api/v1/memories", {"content": "beta's hand-stored note"})
    assert due_trees() == []  # no conversation events anywhere yet
    _conversation(agent)
    assert [(ns.slug, agent_id) for ns, agent_id in due_trees()] == [("alpha", "")]
    result = jobs.run_job("build_rollups")
    assert result == {"trees": 1, "nodes_built": 5}
    assert RollupState.objects.get(namespace=alpha, agent_id="").last_result["built"] == {
        "segment": 1, "day": 1, "week": 1, "month": 1, "year": 1}
    assert due_trees() == []  # built less than MEMORYWEB_ROLLUP_INTERVAL_MINUTES ago
    assert jobs.run_job("build_rollups") == {"trees": 0, "nodes_built": 0}
    RollupState.objects.update(last_finished_at=None)
    settings.MEMORYWEB_ROLLUPS_SCHEDULED = False
    assert due_trees() == []  # scheduled rollups off server-wide
    # A namespace's own setting decides over the server's (beta opts in, with an agent).
    monkeypatch.setattr(tasks, "schedule_of", lambda ns: Schedule(
        ns.slug == "beta", 60, ("outsider-1",) if ns.slug == "beta" else ()))
    assert [(ns.slug, agent_id) for ns, agent_id in due_trees()] == [("beta", ""),
                                                                     ("beta", "outsider-1")]
    monkeypatch.undo()
    settings.MEMORYWEB_ROLLUPS_SCHEDULED = True
    jobs.set_paused("build_rollups", True, by="test")
    assert jobs.run_job("build_rollups") is None
    jobs.set_paused("build_rollups", False, by="test")
    assert jobs.run_job("build_rollups")["trees"] == 1


def test_the_job_reports_what_failed_and_the_next_run_resumes(alpha, agent, monkeypatch):
    import apps.core.summarizer as summarizer_module

    _conversation(agent, "cc-1")
    agent.post("/api/v1/events", {"events": [
        {"id": "cc-2-1", "event_type": "user_message", "session_id": "cc-2",
         "occurred_at": "2024-04-02T15:00:00Z", "text": "Rename the billing service."}]})
    monkeypatch.setattr(summarizer_module, "get_summarizer", lambda: Flaky(
        lambda sources: any("billing" in s.text for s in sources)))
    with pytest.raises(jobs.JobFailed, match="429"):
        jobs.run_job("build_rollups")
    assert RollupNode.objects.count() == 1  # cc-1's segment; nothing above a missing one
    monkeypatch.undo()
    RollupState.objects.update(last_finished_at=None)
    assert jobs.run_job("build_rollups")["nodes_built"] == 5  # cc-2's segment, then above
    assert RollupNode.objects.count() == 6


def test_the_namespace_setting_is_checked_and_followed(alpha, settings):
    assert namespace_settings.registered("rollups").clean is validate_rollup_settings
    assert validate_rollup_settings(None) == {}
    assert validate_rollup_settings({"enabled": False, "interval_minutes": 30,
                                     "agents": ["agent-1", "agent-1", "bot"]}) == {
        "enabled": False, "interval_minutes": 30, "agents": ["agent-1", "bot"]}
    for bad, field in (({"interval_minutes": 1}, "rollups.interval_minutes"),
                       ({"agents": ["no spaces"]}, "rollups.agents"),
                       ({"hourly": True}, "rollups.hourly"), ([], "rollups")):
        with pytest.raises(InvalidInput) as refused:
            validate_rollup_settings(bad)
        assert (refused.value.field or "").startswith(field), refused.value.field
    settings.MEMORYWEB_ROLLUP_INTERVAL_MINUTES = 90
    assert (schedule_of(alpha).enabled, schedule_of(alpha).interval_minutes) == (None, 90)
    own = SimpleNamespace(rollups={"enabled": False, "interval_minutes": 15, "agents": ["bot"]})
    assert (schedule_of(own).enabled, schedule_of(own).interval_minutes,
            schedule_of(own).agents) == (False, 15, ("bot",))


def test_the_rollups_store_is_registered_for_erasure_and_stats(alpha, history):
    store = stores.get("rollups")
    assert store is not None and store.erased_by == stores.ErasedBy.ERASURE
    assert {m._meta.label for m in store.models} == {"timeline.RollupNode", "timeline.Grip",
                                                     "timeline.RollupSource"}
    assert stores.uncovered() == []
    build_module.build(alpha)
    assert store.count(alpha, None) == sum(COUNTS.values())
    assert store.count(alpha, [history["vpn"]]) == 1  # the segment that lists it
    assert store.remaining(None, stores.Erased(ids=(history["vpn"],))) is None


@pytest.mark.django_db(transaction=True)
def test_the_mcp_proxy_backend_reads_the_timeline_over_rest(alpha, history, reader, live_server):
    from apps.mcp.backends import RestBackend

    build_module.build(alpha)
    backend = RestBackend(live_server.url, reader.raw)
    days = backend.timeline_browse({"level": "day", "from": "2024-01-31", "limit": 1})
    assert [d["start"] for d in days] == ["2024-01-31T00:00:00Z"]
    node = backend.timeline_node(days[0]["id"])
    grip = next(g for g in node["grips"] if g["memory_id"] == history["date"])
    expanded = backend.grip_expand(grip["id"], 0, 1)
    assert expanded["source"]["id"] == history["date"]
    assert [m["id"] for m in expanded["after"]] == [history["venue"]]


def test_the_dashboard_shows_nodes_read_only_to_their_namespaces_admins(alpha, beta, history):
    from tests.helpers.people import person

    build_module.build(alpha)
    day = RollupNode.objects.filter(level="day").first()
    alpha_admin, beta_admin = person("alpha-admin", alpha), person("beta-admin", beta)
    listing = alpha_admin.get("/admin/timeline/rollupnode/")
    assert listing.status_code == 200 and "Jan. 30, 2024" in listing.content.decode()
    page = alpha_admin.get(f"/admin/timeline/rollupnode/{day.pk}/change/")
    assert page.status_code == 200 and "Dana moved the launch review" in page.content.decode()
    assert 'name="_save"' not in page.content.decode()  # read-only: nothing to save
    assert alpha_admin.get("/admin/timeline/rollupnode/add/").status_code == 403
    assert beta_admin.get(f"/admin/timeline/rollupnode/{day.pk}/change/").status_code in (302, 404)
