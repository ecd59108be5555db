"""REST door to invitations (apps.tenancy.invitations): team admins invite, people answer."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.query_params import KnownQueryParams
from apps.tenancy import invitations
from apps.tenancy.models import Invitation


class InvitationSerializer(serializers.ModelSerializer):
    """What a namespace's admins see: never whom the name resolved to."""

    status = serializers.CharField(source="state", read_only=True,
                                   help_text="pending, expired, accepted, declined or revoked")
    role = serializers.ChoiceField(choices=invitations.MEMBER_ROLES, read_only=True)

    class Meta:
        model = Invitation
        fields = ["id", "invitee", "role", "status", "created_at", "created_by", "expires_at",
                  "decided_at"]
        read_only_fields = fields


class InvitedSerializer(serializers.Serializer):
    """The answer to sending an invitation: the same whoever the name belongs to."""

    status = serializers.CharField(help_text='Always "invited".')
    id = serializers.IntegerField()
    invitee = serializers.CharField()
    role = serializers.ChoiceField(choices=invitations.MEMBER_ROLES)
    expires_at = serializers.DateTimeField()


class MyInvitationSerializer(serializers.ModelSerializer):
    """What the invited person sees: the namespace and the role offered."""

    namespace = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    namespace_name = serializers.CharField(source="namespace.name", read_only=True)
    role = serializers.ChoiceField(choices=invitations.MEMBER_ROLES, read_only=True)

    class Meta:
        model = Invitation
        fields = ["id", "namespace", "namespace_name", "role", "created_at", "expires_at"]
        read_only_fields = fields


def invited(invitation: Invitation) -> Response:
    """202: an invitation was sent (whether or not the name is anyone's)."""
    return Response({"status": "invited", "id": invitation.pk, "invitee": invitation.invitee,
                     "role": invitation.role, "expires_at": invitation.expires_at},
                    status=status.HTTP_202_ACCEPTED)


class NamespaceInvitationListView(KnownQueryParams, APIView):
    @extend_schema(summary="A namespace's invitations, newest first (team admin)",
                   responses=InvitationSerializer(many=True))
    def get(self, request, slug: str):
        found = invitations.list_invitations(request.user, slug)
        return Response(InvitationSerializer(found, many=True).data)

    @extend_schema(summary="Invite a person by username or e-mail (team admin); they become a "
                   "member when they accept. The answer is the same for every name.",
                   request=invitations.InvitationInput, responses={202: InvitedSerializer})
    def post(self, request, slug: str):
        return invited(invitations.invite(request.user, slug, request.data))


class NamespaceInvitationDetailView(KnownQueryParams, APIView):
    @extend_schema(summary="Revoke a pending invitation (team admin; idempotent)",
                   responses={204: None})
    def delete(self, request, slug: str, invitation_id: int):
        invitations.revoke(request.user, slug, invitation_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MyInvitationListView(KnownQueryParams, APIView):
    @extend_schema(summary="The caller's open invitations (people; an API key has none)",
                   responses=MyInvitationSerializer(many=True))
    def get(self, request):
        return Response(MyInvitationSerializer(invitations.pending_for(request.user),
                                               many=True).data)


class InvitationAcceptView(KnownQueryParams, APIView):
    @extend_schema(summary="Accept an invitation addressed to the caller: become a member",
                   request=None, responses={200: dict})
    def post(self, request, invitation_id: int):
        invitation = invitations.accept(request.user, invitation_id)
        return Response({"namespace": invitation.namespace.slug, "role": invitation.role})


class InvitationDeclineView(KnownQueryParams, APIView):
    @extend_schema(summary="Decline an invitation addressed to the caller", request=None,
                   responses={200: dict})
    def post(self, request, invitation_id: int):
        invitation = invitations.decline(request.user, invitation_id)
        return Response({"namespace": invitation.namespace.slug, "status": invitation.status})
