"""Every write through the API leaves its audit entry: operation, actor, namespace,
record ids and request id, never content. A write route missing here fails the coverage
test, like the isolation matrix."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from apps.audit.models import AuditEntry
from apps.core.roles import Role
from apps.lifecycle import consolidation, kept_apart, namespace_merge
from apps.lifecycle.models import WeakMemory
from apps.memories.external_ids import numbers as cmm_numbers
from apps.privacy import erasure
from apps.tenancy import invitations
from apps.tenancy.members import set_role
from apps.tenancy.models import SharingGrant
from apps.tenancy.principal import Principal
from apps.tenancy.services import create_namespace
from tests.helpers.callers import Caller, make_caller
from tests.routes import API_PREFIXES, fill

CONTENT = "the audited memory's private words"
INVITEE = "invitee-1"  # a person with an invitation to alpha, answering it with their session


@dataclass(frozen=True)
class Write:
    method: str
    pattern: str
    path: str  # {memory}, {key}, {grant}, {user} placeholders
    body: dict | None
    caller: str
    operation: str
    namespace: str = "alpha"
    names: str | None = None  # the placeholder whose id must be among record_ids


WRITES = [
    Write("POST", "api/v1/memories", "/api/v1/memories", {"content": CONTENT + " 2"}, "agent",
          "memory.create"),
    Write("POST", "api/v1/memories/batch", "/api/v1/memories/batch",
          {"memories": [{"content": CONTENT + " 3"}, {"content": CONTENT + " 4"}]}, "agent",
          "memory.create"),
    Write("POST", "api/v1/ingest_and_recall", "/api/v1/ingest_and_recall",
          {"content": CONTENT + " 5"}, "agent", "memory.create"),
    # Conversation events (issue 20): one entry per stored batch.
    Write("POST", "api/v1/events", "/api/v1/events",
          {"events": [{"id": "audited-1", "event_type": "user_message", "session_id": "s1",
                       "occurred_at": "2026-03-03T10:00:00Z", "text": CONTENT + " event"}]},
          "agent", "event.create"),
    Write("PATCH", "api/v1/memories/<pk>", "/api/v1/memories/{memory}",
          {"content": CONTENT + " edited"}, "admin", "memory.update", names="memory"),
    Write("PUT", "api/v1/memories/<pk>", "/api/v1/memories/{memory}", {"content": CONTENT + " put"},
          "admin", "memory.update", names="memory"),
    Write("DELETE", "api/v1/memories/<pk>", "/api/v1/memories/{memory}", None, "admin",
          "memory.delete", names="memory"),
    Write("DELETE", "api/v1/agents/<str:agent_id>/memories",
          "/api/v1/agents/agent-1/memories?namespace=alpha", None, "system",
          "memory.delete_by_agent", names="memory"),
    Write("POST", "api/v1/namespaces", "/api/v1/namespaces", {"slug": "gamma"}, "system",
          "namespace.create", namespace="gamma"),
    Write("PATCH", "api/v1/namespaces/<str:slug>", "/api/v1/namespaces/alpha",
          {"name": "Renamed", "audit_reads": True}, "admin", "namespace.update"),
    Write("DELETE", "api/v1/namespaces/<str:slug>", "/api/v1/namespaces/alpha", None, "system",
          "namespace.delete"),
    Write("PUT", "api/v1/namespaces/<str:slug>/members/<str:username>",
          "/api/v1/namespaces/alpha/members/{user}", {"role": "agent"}, "admin", "member.set"),
    Write("DELETE", "api/v1/namespaces/<str:slug>/members/<str:username>",
          "/api/v1/namespaces/alpha/members/{user}", None, "admin", "member.remove"),
    # Invitations (issue 16, item 4): a team admin sends and revokes, the person answers.
    Write("POST", "api/v1/namespaces/<str:slug>/invitations", "/api/v1/namespaces/alpha/invitations",
          {"username": "someone", "role": "reader"}, "admin", "invitation.create"),
    Write("DELETE", "api/v1/namespaces/<str:slug>/invitations/<int:invitation_id>",
          "/api/v1/namespaces/alpha/invitations/{invitation}", None, "admin", "invitation.revoke",
          names="invitation"),
    Write("POST", "api/v1/invitations/<int:invitation_id>/accept",
          "/api/v1/invitations/{invitation}/accept", None, "invitee", "invitation.accept",
          names="invitation"),
    Write("POST", "api/v1/invitations/<int:invitation_id>/decline",
          "/api/v1/invitations/{invitation}/decline", None, "invitee", "invitation.decline",
          names="invitation"),
    Write("POST", "api/v1/namespaces/<str:slug>/keys", "/api/v1/namespaces/alpha/keys",
          {"role": "reader", "agent_id": "new"}, "admin", "key.create"),
    Write("PATCH", "api/v1/namespaces/<str:slug>/keys/<int:key_id>",
          "/api/v1/namespaces/alpha/keys/{key}", {"expires_at": "2099-01-01T00:00:00Z"}, "admin",
          "key.expiry", names="key"),
    Write("DELETE", "api/v1/namespaces/<str:slug>/keys/<int:key_id>",
          "/api/v1/namespaces/alpha/keys/{key}", None, "admin", "key.revoke", names="key"),
    Write("POST", "api/v1/namespaces/<str:slug>/keys/<int:key_id>/rotate",
          "/api/v1/namespaces/alpha/keys/{key}/rotate", {}, "admin", "key.rotate"),
    Write("POST", "api/v1/namespaces/<str:slug>/grants", "/api/v1/namespaces/alpha/grants",
          {"grantee": "beta"}, "admin", "grant.create"),
    Write("DELETE", "api/v1/namespaces/<str:slug>/grants/<int:grant_id>",
          "/api/v1/namespaces/alpha/grants/{grant}", None, "admin", "grant.revoke", names="grant"),
    Write("POST", "api/v1/erasure-requests", "/api/v1/erasure-requests", {"agent_id": "agent-1"},
          "admin", "erasure.request"),
    Write("POST", "api/v1/erasure-requests/<str:request_id>/approve",
          "/api/v1/erasure-requests/{erasure}/approve", None, "admin", "erasure.approve",
          names="erasure"),
    Write("POST", "api/v1/erasure-requests/<str:request_id>/reject",
          "/api/v1/erasure-requests/{erasure}/reject", {"reason": "not the subject"}, "admin",
          "erasure.reject", names="erasure"),
    Write("POST", "api/v1/erasure-requests/<str:request_id>/execute",
          "/api/v1/erasure-requests/{erasure_approved}/execute", None, "system",
          "erasure.execute", names="erasure_approved"),
    Write("DELETE", "api/v1/forget/certified", "/api/v1/forget/certified?namespace=alpha&"
          "agent_id=agent-1", None, "system", "erasure.execute"),
    # The end-of-day digest (issue 21): who asked for which day's build, beside the
    # build's own timeline.build entries (the system's).
    Write("POST", "api/v1/namespaces/<str:slug>/end-of-day", "/api/v1/namespaces/alpha/end-of-day",
          {}, "admin", "lifecycle.end_of_day"),
    # Consolidation (issue 21): each applied merge and each unmerge.
    Write("POST", "api/v1/namespaces/<str:slug>/consolidate", "/api/v1/namespaces/alpha/consolidate",
          {"dry_run": False, "threshold": 0.85, "filters": {"tags": ["tomerge"]}}, "admin",
          "memory.consolidate", names="tomerge"),
    Write("POST", "api/v1/memories/<str:pk>/unmerge", "/api/v1/memories/{merged}/unmerge", None,
          "admin", "memory.unmerge", names="merged"),
    # Kept apart (a rejection kept) and allowed together again (a pair kept apart in the
    # fixture).
    Write("POST", "api/v1/namespaces/<str:slug>/keep-apart", "/api/v1/namespaces/alpha/keep-apart",
          {"members": ["{memory}", "{tomerge}"]}, "admin", "memory.keep_apart", names="memory"),
    Write("POST", "api/v1/namespaces/<str:slug>/allow-together",
          "/api/v1/namespaces/alpha/allow-together", {"members": ["{memory}", "{apart}"]},
          "admin", "memory.allow_together", names="apart"),
    Write("POST", "cmm/consolidate", "/cmm/consolidate",
          {"threshold": 0.85, "tags": ["tomerge"]}, "admin", "memory.consolidate", names="tomerge"),
    Write("POST", "v1/consolidate", "/v1/consolidate", {"threshold": 0.85, "tags": ["tomerge"]},
          "admin", "memory.consolidate", names="tomerge"),
    # The drop-in routes (apps/compat) write through the same services.
    Write("POST", "cmm/ingest", "/cmm/ingest", {"gist": CONTENT + " 6"}, "agent",
          "memory.create"),
    Write("POST", "cmm/ingest_and_recall", "/cmm/ingest_and_recall", {"gist": CONTENT + " 7"},
          "agent", "memory.create"),
    Write("PUT", "cmm/memory/<str:memory_id>", "/cmm/memory/{cmm_memory}",
          {"gist": CONTENT + " cmm", "importance": 2.0}, "admin", "memory.update", names="memory"),
    Write("DELETE", "cmm/memory/<str:memory_id>", "/cmm/memory/{cmm_memory}", None, "admin",
          "memory.delete", names="memory"),
    Write("DELETE", "cmm/memories/agent/<str:agent_id>",
          "/cmm/memories/agent/agent-1?namespace=alpha", None, "system",
          "memory.delete_by_agent", names="memory"),
    Write("POST", "cmm/end_of_day", "/cmm/end_of_day", {}, "admin", "lifecycle.end_of_day"),
    # Namespace merge (system admin): beta into alpha (alpha has erasures in flight, so it
    # cannot be the source); the revert of an earlier merge of an empty namespace.
    Write("POST", "cmm/merge", "/cmm/merge", {"source": "beta", "target": "alpha"}, "system",
          "namespace.merge", namespace="beta"),
    Write("POST", "api/v1/namespaces/<str:slug>/merge-into", "/api/v1/namespaces/beta/merge-into",
          {"target": "alpha"}, "system", "namespace.merge", namespace="beta"),
    Write("POST", "api/v1/namespace-merges/<str:pk>/revert", "/api/v1/namespace-merges/{merge}/revert",
          None, "system", "namespace.merge_revert", namespace="emptied"),
    # Controlled forgetting (team admin): the memory is proposed in the fixture.
    Write("POST", "api/v1/namespaces/<str:slug>/forgetting", "/api/v1/namespaces/alpha/forgetting",
          {"ids": ["{memory}"]}, "admin", "erasure.request"),
    Write("POST", "api/v1/namespaces/<str:slug>/forgetting/dismiss",
          "/api/v1/namespaces/alpha/forgetting/dismiss", {"ids": ["{memory}"]}, "admin",
          "forgetting.dismiss", names="memory"),
    Write("POST", "v1/store", "/v1/store", {"content": CONTENT + " 8"}, "agent", "memory.create"),
    Write("POST", "v1/store/batch", "/v1/store/batch", {"memories": [{"content": CONTENT + " 9"}]},
          "agent", "memory.create"),
    Write("PATCH", "v1/update", "/v1/update", {"id": "{memory}", "content": CONTENT + " 003"},
          "admin", "memory.update", names="memory"),
    Write("DELETE", "v1/forget", "/v1/forget?namespace=alpha&agent=agent-1", None, "system",
          "memory.delete_matching", names="memory"),
    Write("DELETE", "v1/forget/certified", "/v1/forget/certified?namespace=alpha&agent=agent-1",
          None, "system", "erasure.execute"),
]
#: POST routes that read: recall is audited when the namespace asks (test below).
READS = {("POST", "api/v1/recall"), ("POST", "cmm/recall"), ("POST", "v1/recall"),
         ("POST", "v1/recall/batch")}
#: POST routes that change nothing: a key check, seed 000's /save (every write is already
#: durable).
NO_WRITE = {("POST", "v1/auth/token"), ("POST", "cmm/save")}


@pytest.fixture
def targets(alpha, beta, agent):
    memory = agent.post("/api/v1/memories", {"content": CONTENT}).json()["id"]
    key = make_caller(Role.AGENT, alpha, "target").key.pk
    # A member: PUT changes the role of a member directly (a non-member is invited instead).
    set_role(alpha, get_user_model().objects.create_user("member-1"), Role.READER)
    invitee = get_user_model().objects.create_user(INVITEE)
    grant = SharingGrant.objects.create(grantor=alpha, grantee=beta).pk
    root = Principal(label="system:test", agent_id="", role=Role.SYSTEM)
    selector = {"namespace": "alpha", "agent_id": "agent-1"}  # an erasure selects something
    invitation = invitations.invite(root, "alpha", {"username": INVITEE, "role": "reader"}).pk
    session = APIClient()
    session.force_login(invitee)
    # Two paraphrases to merge, and two merged already (the survivor is unmerged).
    tomerge = [agent.post("/api/v1/memories", {"content": text, "tags": ["tomerge"]}).json()["id"]
               for text in ("Production deploys happen on Tuesday afternoons.",
                            "Deployments to production happen every Tuesday afternoon.")]
    for text in ("The staging database runs PostgreSQL 15 on host db-2.",
                 "Note: the staging database runs on PostgreSQL 15 (host db-2)."):
        agent.post("/api/v1/memories", {"content": text, "tags": ["merged"]})
    merged = consolidation.consolidate(root, "alpha", {"dry_run": False, "threshold": 0.85,
                                                       "filters": {"tags": ["merged"]}})
    kept_apart.keep_apart(root, "alpha", {"members": [memory, tomerge[1]]})
    create_namespace("emptied")
    done = namespace_merge.start(root, "emptied", "alpha")
    assert namespace_merge.run(done.pk) == "done"
    WeakMemory.objects.create(namespace=alpha, memory_id=memory, strength=0.1,
                              below_since=timezone.now(), checked_at=timezone.now(),
                              state="proposed")
    return {"memory": memory, "tomerge": tomerge[0], "apart": tomerge[1],
            "merged": merged.groups[0].survivor,
            "key": key, "grant": grant, "user": "member-1", "merge": done.pk,
            "invitation": invitation, "invitee": Caller(session, None, None, "person"),
            "cmm_memory": cmm_numbers(alpha, "cmm", [uuid.UUID(memory)])[uuid.UUID(memory)],
            "erasure": erasure.create(root, selector).pk,
            "erasure_approved": erasure.approve(root, erasure.create(root, selector).pk).pk}


@pytest.mark.parametrize("write", WRITES, ids=lambda w: f"{w.method} {w.path}")
def test_write_leaves_its_entry(write, targets, callers):
    caller = targets["invitee"] if write.caller == "invitee" else callers[write.caller]
    last = AuditEntry.objects.order_by("-seq").values_list("seq", flat=True).first()
    send = getattr(caller, write.method.lower())
    path = write.path.format(**targets)
    body = fill(write.body, targets)
    response = send(path, body) if body is not None else send(path)
    assert response.status_code < 300, response.content
    entries = list(AuditEntry.objects.filter(seq__gt=last, operation=write.operation))
    assert len(entries) == 1, [e.operation for e in AuditEntry.objects.filter(seq__gt=last)]
    entry = entries[0]
    if caller.key is not None:
        assert entry.actor == f"key:{caller.key.prefix}" and entry.agent_id == caller.key.agent_id
    else:  # a person acting with their session
        assert entry.actor == entry.agent_id == f"user:{INVITEE}"
    assert entry.namespace == write.namespace
    assert entry.request_id == response["X-Request-ID"]
    if write.names:
        assert str(targets[write.names]) in entry.record_ids
    as_text = str(entry.summary) + str(entry.record_ids)
    assert CONTENT not in as_text and "private words" not in as_text
    assert caller.raw is None or caller.raw not in as_text
    new_secret = response.json().get("key") if response.status_code != 204 else None
    if write.operation in ("key.create", "key.rotate"):  # the new secret: never audited
        assert new_secret and new_secret not in as_text
        assert new_secret[:-4] not in str(list(AuditEntry.objects.values()))


def test_recall_is_audited_where_the_namespace_asks(alpha, agent, reader):
    stored = agent.post("/api/v1/memories", {"content": "recall me"}).json()["id"]
    reader.post("/api/v1/recall", {"query": "recall me"})
    assert not AuditEntry.objects.filter(operation="memory.recall").exists()
    alpha.audit_reads = True
    alpha.save()
    response = reader.post("/api/v1/recall", {"query": "recall me", "include_shared": True})
    entry = AuditEntry.objects.get(operation="memory.recall")
    assert entry.record_ids == [stored] and entry.actor == f"key:{reader.key.prefix}"
    assert entry.summary == {"k": 10, "mode": "hybrid", "results": 1, "include_shared": True}
    assert entry.request_id == response["X-Request-ID"]


def test_a_proxys_request_id_is_kept(agent):
    response = agent.post("/api/v1/memories", {"content": "traced"},
                          HTTP_X_REQUEST_ID="proxy-4242")
    assert response["X-Request-ID"] == "proxy-4242"
    assert AuditEntry.objects.get(operation="memory.create").request_id == "proxy-4242"
    odd = agent.post("/api/v1/memories", {"content": "odd"}, HTTP_X_REQUEST_ID="bad id\n")
    assert odd["X-Request-ID"] != "bad id\n" and len(odd["X-Request-ID"]) == 32


def test_a_failed_write_leaves_no_entry(agent, reader):
    before = AuditEntry.objects.count()
    assert reader.post("/api/v1/memories", {"content": "not allowed"}).status_code == 403
    assert agent.post("/api/v1/memories", {"content": ""}).status_code == 400
    assert AuditEntry.objects.count() == before


def _write_routes(resolver=None, prefix: str = "") -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for entry in (resolver or get_resolver()).url_patterns:
        pattern = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            found |= _write_routes(entry, pattern)
        elif isinstance(entry, URLPattern) and pattern.startswith(API_PREFIXES):
            pattern = pattern.replace("(?P<pk>[^/]+)", "<pk>").replace("^", "").replace("$", "")
            callback = entry.callback
            if hasattr(callback, "actions"):
                methods = set(callback.actions)
            else:
                methods = {m for m in ("post", "put", "patch", "delete")
                           if hasattr(callback.view_class, m)}
            found |= {(m.upper(), pattern) for m in methods & {"post", "put", "patch", "delete"}}
    return found


def test_every_write_route_is_covered():
    routes = _write_routes()
    assert len(routes) >= len({(w.method, w.pattern) for w in WRITES})  # the walk finds them
    covered = {(w.method, w.pattern) for w in WRITES} | READS | NO_WRITE
    missing = sorted(routes - covered)
    assert not missing, f"write routes without an audit test: {missing}"
