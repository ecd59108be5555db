"""Adding people across tenants (issue 16, item 4a): a team admin invites, the person
consents. The review: beta's team admin PUT usernames to beta's members and learned who
exists on the server (200 vs 404) and who is a superuser (400), and silently added
alpha's people to beta. Now every answer to a team admin is the same whoever the name
is, and nobody becomes a member without accepting."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from apps.audit.models import AuditEntry
from apps.core.roles import Role
from apps.tenancy.members import members, memberships, set_role
from apps.tenancy.models import Invitation
from tests.helpers.callers import make_caller

INVITE = "/api/v1/namespaces/beta/invitations"


@pytest.fixture
def beta_admin(beta):
    return make_caller(Role.ADMIN, beta, "beta-admin")


@pytest.fixture
def people(alpha):
    """alpha's admin and reader, and a superuser: none of them beta's business."""
    users = get_user_model()
    alice = users.objects.create_user("alice", "alice@example.org", "pw")
    set_role(alpha, alice, Role.ADMIN)
    areader = users.objects.create_user("areader", "areader@example.org", "pw")
    set_role(alpha, areader, Role.READER)
    users.objects.create_superuser("root", "root@example.org", "pw")
    return {"alice": alice, "areader": areader}


def _session(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def _shape(response) -> tuple[int, list[str]]:
    """What tells two answers apart, names and ids aside."""
    body = response.json() if response.content else {}
    return response.status_code, sorted(body) if isinstance(body, dict) else body


@pytest.mark.parametrize("how", ["put", "post"])
def test_a_team_admin_learns_nothing_about_who_exists(beta_admin, people, alpha, beta, how):
    answers = {}
    for name in ("alice", "areader", "root", "nosuchuser"):
        if how == "put":
            response = beta_admin.put(f"/api/v1/namespaces/beta/members/{name}", {"role": "reader"})
        else:
            response = beta_admin.post(INVITE, {"username": name, "role": "reader"})
        answers[name] = _shape(response)
        assert response.status_code == 202, response.content
        assert response.json()["status"] == "invited"
    assert len(set(map(str, answers.values()))) == 1, answers
    assert members(beta) == {}  # nobody was added without consent
    # The audit entries (which beta's admins read) are alike too: no trace of who exists.
    entries = AuditEntry.objects.filter(operation="invitation.create", namespace="beta")
    assert sorted(e.summary["invitee"] for e in entries) == sorted(answers)
    assert {tuple(sorted(e.summary)) for e in entries} == {("invitee", "replaces", "role")}
    assert memberships(people["areader"]) == {alpha.pk: Role.READER}  # alpha's access unchanged


def test_removing_a_non_member_answers_the_same_for_everyone(beta_admin, people, beta):
    answers = {name: _shape(beta_admin.delete(f"/api/v1/namespaces/beta/members/{name}"))
               for name in ("alice", "root", "nosuchuser")}
    assert {status for status, _ in answers.values()} == {404}
    assert len(set(map(str, answers.values()))) == 1, answers


def test_the_invited_person_accepts_and_only_then_is_a_member(beta_admin, people, beta, alpha):
    assert beta_admin.post(INVITE, {"username": "areader", "role": "agent"}).status_code == 202
    assert memberships(people["areader"]) == {alpha.pk: Role.READER}
    areader = _session(people["areader"])
    pending = areader.get("/api/v1/invitations").json()
    assert [(p["namespace"], p["role"]) for p in pending] == [("beta", "agent")]
    accepted = areader.post(f"/api/v1/invitations/{pending[0]['id']}/accept")
    assert accepted.status_code == 200, accepted.content
    assert accepted.json() == {"namespace": "beta", "role": "agent"}
    assert memberships(people["areader"]) == {alpha.pk: Role.READER, beta.pk: Role.AGENT}
    assert areader.get("/api/v1/invitations").json() == []
    ops = list(AuditEntry.objects.filter(namespace="beta").values_list("operation", "actor"))
    assert ("invitation.create", f"key:{beta_admin.key.prefix}") in ops
    assert ("invitation.accept", "user:areader") in ops and ("member.set", "user:areader") in ops
    assert areader.post(f"/api/v1/invitations/{pending[0]['id']}/accept").status_code == 409


def test_declining_leaves_no_membership(beta_admin, people, beta):
    beta_admin.post(INVITE, {"username": "alice", "role": "admin"})
    alice = _session(people["alice"])
    invitation = alice.get("/api/v1/invitations").json()[0]
    assert alice.post(f"/api/v1/invitations/{invitation['id']}/decline").status_code == 200
    assert members(beta) == {}
    assert AuditEntry.objects.filter(operation="invitation.decline", actor="user:alice").exists()
    listed = beta_admin.get(INVITE).json()
    assert [(row["invitee"], row["status"]) for row in listed] == [("alice", "declined")]


def test_by_email_case_insensitive(beta_admin, people, beta):
    beta_admin.post(INVITE, {"email": "AReader@Example.ORG", "role": "reader"})
    assert len(_session(people["areader"]).get("/api/v1/invitations").json()) == 1
    assert _session(people["alice"]).get("/api/v1/invitations").json() == []


def test_nobody_else_can_answer_an_invitation(beta_admin, people, beta, agent):
    beta_admin.post(INVITE, {"username": "areader", "role": "admin"})
    invitation = Invitation.objects.get()
    for caller in (_session(people["alice"]), agent.client, beta_admin.client):
        for verb in ("accept", "decline"):
            response = caller.post(f"/api/v1/invitations/{invitation.pk}/{verb}")
            assert response.status_code == 404, (verb, response.content)
    assert members(beta) == {}


def test_an_invitation_to_a_name_nobody_holds_yet_cannot_be_claimed_later(beta_admin, beta):
    """A name is resolved when the invitation is sent: registering it afterwards (open
    sign-up) does not hand the newcomer the invitation."""
    beta_admin.post(INVITE, {"username": "later", "role": "admin"})
    newcomer = get_user_model().objects.create_user("later", password="pw")
    assert _session(newcomer).get("/api/v1/invitations").json() == []
    assert [row["status"] for row in beta_admin.get(INVITE).json()] == ["pending"]


def test_a_superuser_is_never_offered_a_membership(beta_admin, people):
    beta_admin.post(INVITE, {"username": "root", "role": "admin"})
    root = _session(get_user_model().objects.get(username="root"))
    assert root.get("/api/v1/invitations").json() == []


def test_revoked_and_expired_invitations_cannot_be_accepted(beta_admin, people, beta, settings):
    beta_admin.post(INVITE, {"username": "areader", "role": "reader"})
    revoked = Invitation.objects.get()
    assert beta_admin.delete(f"{INVITE}/{revoked.pk}").status_code == 204
    assert beta_admin.delete(f"{INVITE}/{revoked.pk}").status_code == 204  # idempotent
    areader = _session(people["areader"])
    assert areader.get("/api/v1/invitations").json() == []
    assert areader.post(f"/api/v1/invitations/{revoked.pk}/accept").status_code == 409
    beta_admin.post(INVITE, {"username": "areader", "role": "reader"})
    expired = Invitation.objects.get(status="pending")
    assert expired.expires_at - timezone.now() > dt.timedelta(days=settings.MEMORYWEB_INVITATION_DAYS
                                                               - 1)
    Invitation.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - dt.timedelta(1))
    assert areader.get("/api/v1/invitations").json() == []
    response = areader.post(f"/api/v1/invitations/{expired.pk}/accept")
    assert response.status_code == 409 and "expired" in response.json()["error"]["message"]
    assert members(beta) == {}
    assert AuditEntry.objects.filter(operation="invitation.revoke").count() == 1


def test_inviting_again_replaces_the_pending_invitation(beta_admin, people):
    beta_admin.post(INVITE, {"username": "areader", "role": "reader"})
    beta_admin.post(INVITE, {"username": "areader", "role": "agent"})
    assert [(row["role"], row["status"]) for row in beta_admin.get(INVITE).json()] == [
        ("agent", "pending"), ("reader", "revoked")]
    assert [p["role"] for p in _session(people["areader"]).get("/api/v1/invitations").json()] == [
        "agent"]


def test_changing_an_existing_members_role_stays_direct(beta_admin, people, beta):
    set_role(beta, people["areader"], Role.READER)
    response = beta_admin.put("/api/v1/namespaces/beta/members/areader", {"role": "agent"})
    assert response.status_code == 200 and response.json() == {"username": "areader",
                                                                "role": "agent"}
    assert members(beta) == {"areader": Role.AGENT}
    assert beta_admin.delete("/api/v1/namespaces/beta/members/areader").status_code == 204
    assert members(beta) == {}


def test_a_system_admin_still_adds_members_directly(system_admin, people, beta):
    response = system_admin.put("/api/v1/namespaces/beta/members/alice", {"role": "reader"})
    assert response.status_code == 200 and members(beta) == {"alice": Role.READER}
    assert system_admin.put("/api/v1/namespaces/beta/members/nosuchuser",
                            {"role": "reader"}).status_code == 404


@pytest.mark.parametrize("body, field", [
    ({"role": "reader"}, "username"),
    ({"username": "a", "email": "a@example.org", "role": "reader"}, "username"),
    ({"username": "a", "role": "system"}, "role"),
    ({"email": "not-an-address", "role": "reader"}, "email"),
    ({"username": "a", "role": "reader", "extra": 1}, "extra"),
])
def test_bad_invitations_are_400_and_change_nothing(beta_admin, body, field):
    response = beta_admin.post(INVITE, body)
    assert response.status_code == 400 and response.json()["error"]["field"] == field
    assert not Invitation.objects.exists()


def test_only_the_namespaces_admins_invite_and_see_invitations(beta_admin, beta, outsider,
                                                               team_admin, people):
    beta_admin.post(INVITE, {"username": "alice", "role": "reader"})
    assert outsider.post(INVITE, {"username": "x", "role": "reader"}).status_code == 403
    assert outsider.get(INVITE).status_code == 403
    assert team_admin.get(INVITE).status_code == 404  # alpha's admin: beta is foreign
    row = beta_admin.get(INVITE).json()[0]
    assert set(row) == {"id", "invitee", "role", "status", "created_at", "created_by",
                        "expires_at", "decided_at"}  # never whom the name resolved to


def test_the_admin_page_invites_a_non_member_and_lists_pending_invitations(beta, people):
    from django.test import Client

    bob = get_user_model().objects.create_user("bob", password="pw")
    set_role(beta, bob, Role.ADMIN)
    client = Client()
    client.force_login(bob)
    for name in ("alice", "nosuchuser"):
        response = client.post(f"/admin/tenancy/namespace/{beta.pk}/change/",
                               {"_member": "1", "username": name, "role": "reader"}, follow=True)
        assert f"Member {name}: invited".encode() in response.content
    assert members(beta) == {"bob": Role.ADMIN}
    page = client.get(f"/admin/tenancy/namespace/{beta.pk}/change/").content.decode()
    assert "Pending invitations" in page and "nosuchuser" in page
    pending = Invitation.objects.get(invitee="alice")
    client.post(f"/admin/tenancy/namespace/{beta.pk}/change/",
                {"_invitation": "1", "invitation": pending.pk})
    pending.refresh_from_db()
    assert pending.status == "revoked"


def test_the_person_answers_on_their_account_page(beta_admin, people, beta):
    from django.test import Client

    beta_admin.post(INVITE, {"username": "areader", "role": "agent"})
    client = Client()
    client.force_login(people["areader"])
    page = client.get("/accounts/invitations/")
    assert page.status_code == 200 and b"beta" in page.content and b"agent" in page.content
    invitation = Invitation.objects.get()
    response = client.post("/accounts/invitations/", {"invitation": invitation.pk,
                                                      "answer": "accept"}, follow=True)
    assert response.status_code == 200 and b"You are now agent in beta" in response.content
    assert members(beta) == {"areader": Role.AGENT}
    assert Client().get("/accounts/invitations/").status_code == 302  # login first


def test_an_invitation_racing_another_for_the_same_name_replaces_it(beta_admin, people, beta,
                                                                     monkeypatch):
    """Two invitations of one name at once: with no pending row to lock, both inserted and
    the loser's IntegrityError was a 500. The rival is committed the moment this request
    has looked for pending rows (the race's window); the request still answers 202 and one
    invitation stays pending."""
    from apps.tenancy import invitations

    resolve = invitations._resolve
    raced = []

    def rival_first(invitee, by_email):
        if not raced:
            raced.append(Invitation.objects.create(
                namespace=beta, invitee=invitee, by_email=by_email, role="reader",
                created_by="rival", created_at=timezone.now(),
                expires_at=timezone.now() + dt.timedelta(days=1)))
        return resolve(invitee, by_email)

    monkeypatch.setattr(invitations, "_resolve", rival_first)
    response = beta_admin.post(INVITE, {"username": "alice", "role": "agent"})
    assert response.status_code == 202, response.content
    pending = Invitation.objects.filter(namespace=beta, invitee="alice", status="pending")
    assert [i.role for i in pending] == ["agent"]
