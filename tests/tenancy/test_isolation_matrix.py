"""Every API route by every kind of caller: the exact status, and no foreign data in the body.

Targets are alpha's objects: a private memory, a memory alpha shares (tag ``public``)
with delta, a key, a member, a grant. Callers: no key, a revoked key, an expired key,
alpha's reader / agent / team admin keys, alpha's reader and team admin as logged-in
people (session), a system admin, beta's agent (the outsider), delta's agent (a grantee
with a live grant) and epsilon's agent (a grantee whose grant was revoked). A route added
to the API fails ``test_every_api_route_is_in_the_matrix`` until it gets a row here.

The world is built once per module (``shared_world``), not once per test: building it
through the API was ~90 % of this module's time (issue 18: ``make test-fast``). It lives
in a transaction opened for the module and never committed; every test runs in a
savepoint of it (``db``), every cell in a savepoint of that, so no SQL write outlives
its cell. What is not SQL is put back before each test (``world``): the world's Chroma
vectors, which cells delete, replace or drop, and its key store (the erasure ledger).
After the module the transaction is rolled back, the world's collections are dropped,
and the teardown fails unless the database (rows per table, tables, SQLite's sequences)
and the vector store are as the module found them.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import override_settings
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core import namespace_keys
from apps.core.roles import Role
from apps.gateway import learning_stores
from apps.lifecycle.models import ConsolidationRun
from apps.memories import lexical, sealing, vectorstore
from apps.memories.external_ids import numbers as cmm_numbers
from apps.memories.models import Memory
from apps.privacy import erasure
from apps.tenancy import invitations, key_cache
from apps.tenancy.members import set_role
from apps.tenancy.models import Namespace, SharingGrant
from apps.tenancy.principal import Principal
from apps.tenancy.services import create_namespace
from apps.timeline import fingerprints
from apps.timeline.models import Grip, RollupNode
from apps.timeline.services import build as build_timeline
from tests.helpers.callers import Caller, make_caller
from tests.helpers.world_state import (
    SharedWorld,
    collection_names,
    database_state,
    leftovers,
    restore_vectors,
    vectors,
)
from tests.routes import API_PREFIXES, fill

SECRET = "alpha's confidential launch code is 7734"
SHARED = "alpha's public roadmap: the launch moves to spring"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # the URL pattern as Django has it, for the coverage test
    path: str  # with {memory}, {shared}, {key}, {user}, {grant} placeholders
    body: dict | None
    min_role: Role  # the lowest alpha role that succeeds
    ok: int  # the success status
    scoped: bool = True  # about alpha's objects: an outsider gets 404, not 403
    grantee: int | None = None  # a live grantee's status, when not the outsider's
    #: The one caller the object belongs to (an invitation's invitee): it gets ``ok``,
    #: every other authenticated caller 404, whatever its role.
    only: str | None = None


MEMORY_BODY = {"content": "written by the matrix", "namespace": "alpha"}
ROUTES = [
    Route("GET", "api/v1/memories", "/api/v1/memories?namespace=alpha", None, Role.READER, 200),
    Route("POST", "api/v1/memories", "/api/v1/memories", MEMORY_BODY, Role.AGENT, 201),
    Route("POST", "api/v1/memories/batch", "/api/v1/memories/batch",
          {"memories": [{"content": "batch item"}], "namespace": "alpha"}, Role.AGENT, 201),
    Route("GET", "api/v1/memories/<pk>", "/api/v1/memories/{memory}", None, Role.READER, 200),
    Route("PATCH", "api/v1/memories/<pk>", "/api/v1/memories/{memory}", {"importance": 0.9},
          Role.ADMIN, 200),
    Route("PUT", "api/v1/memories/<pk>", "/api/v1/memories/{memory}", {"content": "replaced"},
          Role.ADMIN, 200),
    Route("DELETE", "api/v1/memories/<pk>", "/api/v1/memories/{memory}", None, Role.ADMIN, 204),
    Route("GET", "api/v1/memories/<pk>/versions", "/api/v1/memories/{memory}/versions", None,
          Role.READER, 200),
    # The memory alpha shares with delta: readable by delta, never writable.
    Route("GET", "api/v1/memories/<pk>", "/api/v1/memories/{shared}", None, Role.READER, 200,
          grantee=200),
    Route("PATCH", "api/v1/memories/<pk>", "/api/v1/memories/{shared}", {"importance": 0.9},
          Role.ADMIN, 200, grantee=403),
    Route("PUT", "api/v1/memories/<pk>", "/api/v1/memories/{shared}", {"content": "replaced"},
          Role.ADMIN, 200, grantee=403),
    Route("DELETE", "api/v1/memories/<pk>", "/api/v1/memories/{shared}", None, Role.ADMIN, 204,
          grantee=403),
    Route("GET", "api/v1/memories/<pk>/versions", "/api/v1/memories/{shared}/versions", None,
          Role.READER, 200),
    Route("POST", "api/v1/recall", "/api/v1/recall", {"query": "launch code", "namespace": "alpha"},
          Role.READER, 200),
    # Conversation events (issue 20): agents add them, readers list a session.
    Route("POST", "api/v1/events", "/api/v1/events",
          {"events": [{"id": "matrix-1", "event_type": "user_message", "session_id": "s1",
                       "occurred_at": "2026-03-03T10:00:00Z", "text": "written by the matrix"}],
           "namespace": "alpha"}, Role.AGENT, 201),
    Route("GET", "api/v1/events", "/api/v1/events?session_id=s1&namespace=alpha", None,
          Role.READER, 200),
    # The timeline (issue 20): readers browse, open a node and expand a grip.
    Route("GET", "api/v1/timeline", "/api/v1/timeline?namespace=alpha", None, Role.READER, 200),
    Route("GET", "api/v1/timeline/<str:node_id>", "/api/v1/timeline/{timeline_node}", None,
          Role.READER, 200),
    Route("GET", "api/v1/grips/<str:grip_id>/expand", "/api/v1/grips/{grip}/expand", None,
          Role.READER, 200),
    # The lifecycle (issue 21): a team admin asks for a day's digest (today by default).
    Route("POST", "api/v1/namespaces/<str:slug>/end-of-day", "/api/v1/namespaces/alpha/end-of-day",
          {}, Role.ADMIN, 200),
    # Namespace merge (issue 21): system admins only; a dry run changes nothing. No merge
    # exists in the world: its routes answer 404 to a system admin, 403 to the rest.
    Route("POST", "api/v1/namespaces/<str:slug>/merge-into", "/api/v1/namespaces/alpha/merge-into",
          {"target": "beta", "dry_run": True}, Role.SYSTEM, 200, scoped=False),
    Route("GET", "api/v1/namespace-merges/<str:pk>",
          "/api/v1/namespace-merges/00000000-0000-0000-0000-000000000000", None, Role.SYSTEM,
          404, scoped=False),
    Route("POST", "api/v1/namespace-merges/<str:pk>/revert",
          "/api/v1/namespace-merges/00000000-0000-0000-0000-000000000000/revert", None,
          Role.SYSTEM, 404, scoped=False),
    # Controlled forgetting (issue 21): alpha's team admins; nothing is proposed in the
    # world, so asking to forget or dismiss a memory is a 400 naming ids.
    Route("GET", "api/v1/namespaces/<str:slug>/forgetting", "/api/v1/namespaces/alpha/forgetting",
          None, Role.ADMIN, 200),
    Route("POST", "api/v1/namespaces/<str:slug>/forgetting", "/api/v1/namespaces/alpha/forgetting",
          {"ids": ["{memory}"]}, Role.ADMIN, 400),
    Route("POST", "api/v1/namespaces/<str:slug>/forgetting/dismiss",
          "/api/v1/namespaces/alpha/forgetting/dismiss", {"ids": ["{memory}"]}, Role.ADMIN, 400),
    # Consolidation (issue 21): a team admin proposes (dry run) and unmerges (alpha's
    # private memory is merged with nothing: 409 once the caller may ask).
    Route("POST", "api/v1/namespaces/<str:slug>/consolidate",
          "/api/v1/namespaces/alpha/consolidate", {"dry_run": True}, Role.ADMIN, 200),
    Route("POST", "api/v1/memories/<str:pk>/unmerge", "/api/v1/memories/{memory}/unmerge", None,
          Role.ADMIN, 409),
    # Kept apart (a rejection kept): alpha's team admins, alpha's memories.
    Route("POST", "api/v1/namespaces/<str:slug>/keep-apart", "/api/v1/namespaces/alpha/keep-apart",
          {"members": ["{memory}", "{shared}"]}, Role.ADMIN, 200),
    Route("POST", "api/v1/namespaces/<str:slug>/allow-together",
          "/api/v1/namespaces/alpha/allow-together", {"members": ["{memory}", "{shared}"]},
          Role.ADMIN, 200),
    # A consolidation run (a large consolidation's job): alpha's team admins read it.
    Route("GET", "api/v1/consolidations/<str:pk>", "/api/v1/consolidations/{consolidation_run}",
          None, Role.ADMIN, 200),
    Route("POST", "api/v1/ingest_and_recall", "/api/v1/ingest_and_recall", MEMORY_BODY,
          Role.AGENT, 201),
    Route("DELETE", "api/v1/agents/<str:agent_id>/memories",
          "/api/v1/agents/agent-1/memories?namespace=alpha", None, Role.SYSTEM, 200, scoped=False),
    Route("GET", "api/v1/namespaces", "/api/v1/namespaces", None, Role.READER, 200, scoped=False),
    Route("POST", "api/v1/namespaces", "/api/v1/namespaces", {"slug": "gamma"}, Role.SYSTEM, 201,
          scoped=False),
    Route("GET", "api/v1/namespaces/<str:slug>", "/api/v1/namespaces/alpha", None, Role.READER, 200),
    Route("PATCH", "api/v1/namespaces/<str:slug>", "/api/v1/namespaces/alpha", {"name": "A"},
          Role.ADMIN, 200),
    Route("DELETE", "api/v1/namespaces/<str:slug>", "/api/v1/namespaces/alpha", None, Role.SYSTEM, 204),
    Route("GET", "api/v1/namespaces/<str:slug>/members", "/api/v1/namespaces/alpha/members", None,
          Role.ADMIN, 200),
    Route("PUT", "api/v1/namespaces/<str:slug>/members/<str:username>",
          "/api/v1/namespaces/alpha/members/{user}", {"role": "agent"}, Role.ADMIN, 200),
    Route("DELETE", "api/v1/namespaces/<str:slug>/members/<str:username>",
          "/api/v1/namespaces/alpha/members/{user}", None, Role.ADMIN, 204),
    Route("GET", "api/v1/namespaces/<str:slug>/keys", "/api/v1/namespaces/alpha/keys", None,
          Role.ADMIN, 200),
    Route("POST", "api/v1/namespaces/<str:slug>/keys", "/api/v1/namespaces/alpha/keys",
          {"role": "reader", "agent_id": "matrix"}, Role.ADMIN, 201),
    Route("PATCH", "api/v1/namespaces/<str:slug>/keys/<int:key_id>",
          "/api/v1/namespaces/alpha/keys/{key}", {"expires_at": None}, Role.ADMIN, 200),
    Route("DELETE", "api/v1/namespaces/<str:slug>/keys/<int:key_id>",
          "/api/v1/namespaces/alpha/keys/{key}", None, Role.ADMIN, 204),
    Route("POST", "api/v1/namespaces/<str:slug>/keys/<int:key_id>/rotate",
          "/api/v1/namespaces/alpha/keys/{key}/rotate", {}, Role.ADMIN, 201),
    Route("GET", "api/v1/namespaces/<str:slug>/grants", "/api/v1/namespaces/alpha/grants", None,
          Role.ADMIN, 200),
    Route("POST", "api/v1/namespaces/<str:slug>/grants", "/api/v1/namespaces/alpha/grants",
          {"grantee": "beta", "tags": ["public"]}, Role.ADMIN, 201),
    Route("GET", "api/v1/namespaces/<str:slug>/grants/<int:grant_id>",
          "/api/v1/namespaces/alpha/grants/{grant}", None, Role.ADMIN, 200),
    Route("DELETE", "api/v1/namespaces/<str:slug>/grants/<int:grant_id>",
          "/api/v1/namespaces/alpha/grants/{grant}", None, Role.ADMIN, 204),
    Route("GET", "api/v1/sharing/accessible", "/api/v1/sharing/accessible", None, Role.READER, 200,
          scoped=False),
    # Invitations (issue 16, item 4): alpha's admins send and list them; only the invited
    # person (alpha's reading member, invited to become an agent) sees and answers one.
    Route("GET", "api/v1/namespaces/<str:slug>/invitations", "/api/v1/namespaces/alpha/invitations",
          None, Role.ADMIN, 200),
    Route("POST", "api/v1/namespaces/<str:slug>/invitations", "/api/v1/namespaces/alpha/invitations",
          {"username": "someone", "role": "reader"}, Role.ADMIN, 202),
    Route("DELETE", "api/v1/namespaces/<str:slug>/invitations/<int:invitation_id>",
          "/api/v1/namespaces/alpha/invitations/{invitation}", None, Role.ADMIN, 204),
    Route("GET", "api/v1/invitations", "/api/v1/invitations", None, Role.READER, 200, scoped=False),
    Route("POST", "api/v1/invitations/<int:invitation_id>/accept",
          "/api/v1/invitations/{invitation}/accept", None, Role.READER, 200, only="member_reader"),
    Route("POST", "api/v1/invitations/<int:invitation_id>/decline",
          "/api/v1/invitations/{invitation}/decline", None, Role.READER, 200, only="member_reader"),
    Route("GET", "api/v1/audit", "/api/v1/audit?namespace=alpha", None, Role.ADMIN, 200),
    Route("GET", "api/v1/audit/verify", "/api/v1/audit/verify", None, Role.SYSTEM, 200,
          scoped=False),
    Route("GET", "api/v1/encryption", "/api/v1/encryption", None, Role.SYSTEM, 200, scoped=False),
    Route("GET", "api/v1/erasure-ledger", "/api/v1/erasure-ledger", None, Role.SYSTEM, 200,
          scoped=False),
    Route("GET", "api/v1/export", "/api/v1/export?namespace=alpha", None, Role.ADMIN, 200),
    Route("GET", "api/v1/erasure-requests", "/api/v1/erasure-requests", None, Role.ADMIN, 200,
          scoped=False),
    Route("POST", "api/v1/erasure-requests", "/api/v1/erasure-requests",
          {"namespace": "alpha", "agent_id": "erasable"}, Role.ADMIN, 201),
    Route("GET", "api/v1/erasure-requests/<str:request_id>", "/api/v1/erasure-requests/{erasure}",
          None, Role.ADMIN, 200),
    Route("POST", "api/v1/erasure-requests/<str:request_id>/approve",
          "/api/v1/erasure-requests/{erasure}/approve", None, Role.ADMIN, 200),
    Route("POST", "api/v1/erasure-requests/<str:request_id>/reject",
          "/api/v1/erasure-requests/{erasure}/reject", {"reason": "not the subject"}, Role.ADMIN,
          200),
    Route("POST", "api/v1/erasure-requests/<str:request_id>/execute",
          "/api/v1/erasure-requests/{erasure_approved}/execute", None, Role.SYSTEM, 200),
    Route("GET", "api/v1/erasure-requests/<str:request_id>/certificate",
          "/api/v1/erasure-requests/{erasure_done}/certificate", None, Role.ADMIN, 200),
    Route("DELETE", "api/v1/forget/certified",
          "/api/v1/forget/certified?namespace=alpha&agent_id=erasable", None, Role.SYSTEM, 200,
          scoped=False),
    # Seed 000's drop-in routes (apps/compat/cmm.py); ?namespace= lets the system key act.
    Route("POST", "cmm/ingest", "/cmm/ingest?namespace=alpha", {"gist": "written by the matrix"},
          Role.AGENT, 201),
    Route("POST", "cmm/recall", "/cmm/recall?namespace=alpha", {"query": "launch code"},
          Role.READER, 200),
    Route("POST", "cmm/ingest_and_recall", "/cmm/ingest_and_recall?namespace=alpha",
          {"gist": "written by the matrix"}, Role.AGENT, 201),
    Route("GET", "cmm/memory/<str:memory_id>", "/cmm/memory/{cmm_memory}?namespace=alpha", None,
          Role.READER, 200),
    Route("PUT", "cmm/memory/<str:memory_id>", "/cmm/memory/{cmm_memory}?namespace=alpha",
          {"gist": "replaced", "importance": 2.0}, Role.ADMIN, 200),
    Route("DELETE", "cmm/memory/<str:memory_id>", "/cmm/memory/{cmm_memory}?namespace=alpha",
          None, Role.ADMIN, 200),
    Route("GET", "cmm/memories", "/cmm/memories?namespace=alpha&limit=50", None, Role.READER, 200),
    Route("DELETE", "cmm/memories/agent/<str:agent_id>",
          "/cmm/memories/agent/agent-1?namespace=alpha", None, Role.SYSTEM, 200, scoped=False),
    Route("POST", "cmm/consolidate", "/cmm/consolidate?namespace=alpha", {"dry_run": True},
          Role.ADMIN, 200),
    Route("POST", "cmm/end_of_day", "/cmm/end_of_day?namespace=alpha", {}, Role.ADMIN, 200),
    Route("POST", "cmm/merge", "/cmm/merge", {"source": "alpha", "target": "beta",
                                              "dry_run": True}, Role.SYSTEM, 200, scoped=False),
    Route("POST", "cmm/save", "/cmm/save?namespace=alpha", {}, Role.ADMIN, 200),
    Route("GET", "cmm/health", "/cmm/health", None, Role.READER, 200, scoped=False),
    # Seed 003's drop-in routes (apps/compat/memoryoss.py).
    Route("POST", "v1/store", "/v1/store", MEMORY_BODY, Role.AGENT, 200),
    Route("POST", "v1/store/batch", "/v1/store/batch",
          {"memories": [{"content": "batch item"}], "namespace": "alpha"}, Role.AGENT, 200),
    Route("POST", "v1/recall", "/v1/recall", {"query": "launch code", "namespace": "alpha"},
          Role.READER, 200),
    Route("POST", "v1/recall/batch", "/v1/recall/batch",
          {"queries": [{"query": "launch code", "namespace": "alpha"}]}, Role.READER, 200),
    Route("PATCH", "v1/update", "/v1/update", {"id": "{memory}", "content": "replaced"},
          Role.ADMIN, 200),
    Route("DELETE", "v1/forget", "/v1/forget?namespace=alpha&agent=nobody", None, Role.SYSTEM,
          200, scoped=False),
    Route("DELETE", "v1/forget/certified", "/v1/forget/certified?namespace=alpha&agent=erasable",
          None, Role.SYSTEM, 200, scoped=False),
    Route("GET", "v1/export", "/v1/export?namespace=alpha", None, Role.ADMIN, 200),
    Route("GET", "v1/memories", "/v1/memories?namespace=alpha", None, Role.READER, 200),
    Route("POST", "v1/consolidate", "/v1/consolidate?namespace=alpha", {"dry_run": True},
          Role.ADMIN, 200),
]
#: Routes that take no credential, tested on their own: seed 003's key check answers 401
#: to every caller with a wrong key (tests/compat/test_memoryoss.py).
UNAUTHENTICATED = {"v1/auth/token"}

#: In this order on purpose: a route's callers share one world (SQL writes are rolled
#: back per caller, side effects outside SQL, such as Chroma deletes or a dropped
#: collection, are not), so the foreign callers ask first, on an untouched world, and the
#: system admin, whose operations go furthest, asks last.
CALLERS = ["anonymous", "revoked", "expired", "outsider", "grantee", "ex_grantee", "reader",
           "agent", "admin", "member_reader", "member_admin", "system"]
ALPHA_ROLES = {"reader": Role.READER, "agent": Role.AGENT, "admin": Role.ADMIN,
               "member_reader": Role.READER, "member_admin": Role.ADMIN, "system": Role.SYSTEM}
#: Callers that must see nothing of alpha but what alpha shares with them.
FOREIGN = ("anonymous", "revoked", "expired", "outsider", "grantee", "ex_grantee")


def expected_status(route: Route, caller: str) -> int:
    if caller in ("anonymous", "revoked", "expired"):
        return 401
    if route.only is not None:
        return route.ok if caller == route.only else 404
    if caller == "grantee" and route.grantee is not None:
        return route.grantee
    if caller in ("outsider", "grantee", "ex_grantee"):
        if route.scoped:
            return 404
        return route.ok if route.min_role <= Role.AGENT else 403
    return route.ok if ALPHA_ROLES[caller] >= route.min_role else 403


#: The namespaces the world makes: their Chroma collections are put back before every
#: test and dropped after the module.
WORLD_NAMESPACES = ("alpha", "beta", "delta", "epsilon")


def _person(username: str, namespace, role: Role) -> Caller:
    user = get_user_model().objects.create_user(username)
    set_role(namespace, user, role)
    client = APIClient()
    client.force_login(user)
    return Caller(client, None, None, f"member {role.label}")


def _base_callers() -> dict[str, Caller]:
    """tests/conftest.py's ``callers`` (alpha, beta and the six callers), made without its
    function-scoped fixtures so that a module-scoped fixture can make them."""
    alpha, beta = create_namespace("alpha", "Team Alpha"), create_namespace("beta", "Team Beta")
    return {
        "reader": make_caller(Role.READER, alpha, "reader-1"),
        "agent": make_caller(Role.AGENT, alpha, "agent-1"),
        "admin": make_caller(Role.ADMIN, alpha, "admin-1"),
        "system": make_caller(Role.SYSTEM, None, "root"),
        "outsider": make_caller(Role.AGENT, beta, "outsider-1"),
        "anonymous": make_caller(None, None),
    }


def _build_world() -> dict:
    """alpha's private and shared memories, key, member and grants; the extra callers."""
    callers = _base_callers()
    alpha = Namespace.objects.get(slug="alpha")
    memory = callers["agent"].post("/api/v1/memories", {"content": SECRET}).json()
    shared = callers["agent"].post("/api/v1/memories", {"content": SHARED,
                                                        "tags": ["public"]}).json()
    callers["outsider"].post("/api/v1/memories", {"content": "beta's own note"})
    target_key = make_caller(Role.AGENT, alpha, "target")
    member = get_user_model().objects.create_user("member-1")
    set_role(alpha, member, Role.READER)
    revoked = make_caller(Role.ADMIN, alpha, "revoked")
    revoked.key.revoked_at = timezone.now()
    revoked.key.save()
    expired = make_caller(Role.ADMIN, alpha, "expired")
    expired.key.expires_at = timezone.now() - dt.timedelta(seconds=1)
    expired.key.save()
    delta, epsilon = create_namespace("delta"), create_namespace("epsilon")
    grant = SharingGrant.objects.create(grantor=alpha, grantee=delta, tags=["public"])
    SharingGrant.objects.create(grantor=alpha, grantee=epsilon, revoked_at=timezone.now())
    extra = {
        "revoked": revoked, "expired": expired,
        "grantee": make_caller(Role.AGENT, delta, "delta-agent"),
        "ex_grantee": make_caller(Role.AGENT, epsilon, "epsilon-agent"),
        "member_reader": _person("reading-person", alpha, Role.READER),
        "member_admin": _person("admin-person", alpha, Role.ADMIN),
    }
    root = Principal.for_key(callers["system"].key)
    # An erasure must select something: "erasable" holds a memory the erasure routes (and
    # the requests below) select, "erased" one that the executed request already erased.
    for subject in ("erasable", "erased"):
        make_caller(Role.AGENT, alpha, subject).post("/api/v1/memories",
                                                     {"content": f"a note by {subject}"})
    erasable = {"namespace": "alpha", "agent_id": "erasable"}
    erasures = {
        "erasure": erasure.create(root, erasable).pk,
        "erasure_approved": erasure.approve(root, erasure.create(root, erasable).pk).pk,
        "erasure_done": erasure.create(root, {"namespace": "alpha", "agent_id": "erased",
                                              "execute": True}).pk,
    }
    pk = Memory.objects.get(pk=memory["id"]).pk
    cmm_memory = cmm_numbers(alpha, "cmm", [pk])[pk]
    build_timeline(alpha)  # alpha's memories rolled up: a year node and its grips
    year = RollupNode.objects.get(namespace=alpha, level="year", agent_id="")
    invitation = invitations.invite(root, "alpha", {"username": "reading-person", "role": "agent"})
    run = ConsolidationRun.objects.create(namespace=alpha, requested_by="matrix",
                                          role=Role.ADMIN, request={"dry_run": True})
    return {"consolidation_run": str(run.pk),
            "memory": memory["id"], "shared": shared["id"], "key": target_key.key.pk,
            "cmm_memory": cmm_memory, "timeline_node": str(year.pk),
            "grip": str(Grip.objects.filter(node=year).first().pk),
            "user": "member-1", "grant": grant.pk, "invitation": invitation.pk, **erasures,
            "callers": {**callers, **extra}}


@pytest.fixture(scope="module")
def shared_world(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[SharedWorld]:
    """The world, built once for the module in a transaction that is never committed.

    Why: building it (memories stored through the API: embedding, Chroma, keyword index,
    audit; keys, members, grants, erasures, a timeline, an invitation, a consolidation
    run) was most of this module's time when every test built its own. Each test's
    ``db`` transaction is a savepoint inside this one, so the world is what a per-test
    build made (nothing committed: no ``on_commit`` hook ran, as before); ``world`` puts
    back what is not SQL. Cleaned: the transaction is rolled back (rows, keyword tables,
    SQLite's sequences), the world's Chroma collections are dropped, and :func:`leftovers`
    must find every table's row count, the table list, SQLite's sequences and the
    collections (embedded: all; a Chroma server other workers share: the world's) as
    they were before the module.
    """
    home = tmp_path_factory.mktemp("isolation-matrix")
    store = vectorstore.get_vector_store()
    with django_db_blocker.unblock():
        before = database_state()
    chroma_before = collection_names(store)
    outer = transaction.atomic()
    with django_db_blocker.unblock(), override_settings(
            MEMORYWEB_AUDIT_ANCHOR=str(home / "audit-anchor.json"),
            MEMORYWEB_KEYSTORE_DIR=home / "keystore", MEMORYWEB_KEY_PROVIDER="file",
            MEMORYWEB_KEK_PATH=""):
        namespace_keys.forget_all()
        sealing.forget()
        outer.__enter__()
        try:
            world = _build_world()
            namespaces = list(Namespace.objects.filter(slug__in=WORLD_NAMESPACES))
        except BaseException:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)
            raise
    shared = SharedWorld(world, home / "keystore", namespaces, vectors(store, namespaces))
    try:
        yield shared
    finally:
        with django_db_blocker.unblock():
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)
            for namespace in namespaces:
                store.drop_collection(store.collection_name(namespace))
            key_cache.clear()
            namespace_keys.forget_all()
            sealing.forget()
            left = leftovers(before, database_state(), chroma_before,
                              collection_names(store), store, namespaces)
        assert not left, f"the shared world left this behind: {left}"


@pytest.fixture
def world(shared_world, db, key_store, monkeypatch):
    """The shared world as a fresh one would be: its vectors and key store put back, and
    the in-process memos keyed by the world's (now fixed) ids emptied: keyword row
    counts, erased texts' fingerprints, learned-fact look-ups."""
    restore_vectors(vectorstore.get_vector_store(), shared_world)
    if shared_world.keystore.exists():
        shutil.copytree(shared_world.keystore, key_store, dirs_exist_ok=True)
    key_cache.clear()
    monkeypatch.setattr(lexical, "_totals", {})
    monkeypatch.setattr(fingerprints, "_remembered", OrderedDict())
    monkeypatch.setattr(learning_stores, "_whole", {})
    return shared_world.world


def _cell(world, route: Route, caller: str) -> list[str]:
    """One caller on one route: what is wrong with the answer (nothing, ideally)."""
    client = world["callers"][caller]
    path = route.path.format(**{k: v for k, v in world.items() if k != "callers"})
    send = getattr(client, route.method.lower())
    body = fill(route.body, world)
    response = send(path, body) if body is not None else send(path)
    content = (b"".join(response.streaming_content) if response.streaming
               else response.content)
    problems = []
    if response.status_code != expected_status(route, caller):
        problems.append(f"{caller}: {response.status_code}, expected "
                        f"{expected_status(route, caller)}: {content[:300]!r}")
    if caller in FOREIGN:
        text = content.decode()
        leaked = [SECRET, world["memory"], "member-1", "reading-person"]
        if caller != "grantee" or response.status_code >= 400:
            leaked += [SHARED, world["shared"]]
        problems += [f"{caller}: the body holds {item!r}" for item in leaked if item in text]
    return problems


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_matrix_row(world, route):
    """Every caller on one route, each on the same world: a caller's writes are rolled
    back (a savepoint) before the next one asks. The world is built once per module and
    put back before each route (``world``), rather than built per route or per cell
    (this test was a fifth of the suite's time)."""
    problems = []
    for caller in CALLERS:
        with transaction.atomic():
            problems += _cell(world, route, caller)
            transaction.set_rollback(True)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("caller", ["outsider", "grantee", "ex_grantee"])
@pytest.mark.parametrize("mode", ["vector", "lexical", "hybrid"])
def test_shared_recall_reaches_exactly_what_is_shared(world, caller, mode):
    """Recall with include_shared, by each foreign caller: the live grantee gets alpha's
    shared memory and never the private one; the others get nothing of alpha's."""
    response = world["callers"][caller].post("/api/v1/recall", {
        "query": "alpha launch code roadmap", "include_shared": True, "mode": mode,
        "explain": True, "k": 50})
    assert response.status_code == 200, response.content
    body = response.content.decode()
    assert SECRET not in body and world["memory"] not in body
    found = {row["id"] for row in response.json()["results"]}
    assert (world["shared"] in found) == (caller == "grantee")
    assert ("alpha" in response.json()["searched"]) == (caller == "grantee")


def _api_patterns(resolver=None, prefix: str = "") -> set[str]:
    found: set[str] = set()
    for entry in (resolver or get_resolver()).url_patterns:
        pattern = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            found |= _api_patterns(entry, pattern)
        elif isinstance(entry, URLPattern) and pattern.startswith(API_PREFIXES):
            pattern = re.sub(r"\(\?P<pk>\[\^/\]\+\)", "<pk>", pattern)  # router's detail regex
            found.add(pattern.replace("^", "").replace("$", ""))
    return found


def test_every_api_route_is_in_the_matrix():
    covered = {route.pattern for route in ROUTES} | UNAUTHENTICATED
    missing = sorted(_api_patterns() - covered)
    assert not missing, f"API routes missing from the isolation matrix: {missing}"
