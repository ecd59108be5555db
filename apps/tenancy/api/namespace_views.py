"""REST door to namespaces and their members (apps.tenancy.namespaces)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.query_params import KnownQueryParams
from apps.core.roles import Action
from apps.tenancy import namespaces
from apps.tenancy.api.invitation_views import InvitedSerializer, invited
from apps.tenancy.models import Invitation, Namespace


class NamespaceSerializer(serializers.ModelSerializer):
    archived = serializers.SerializerMethodField()
    role = serializers.SerializerMethodField(help_text="The caller's role here.")

    class Meta:
        model = Namespace
        fields = ["slug", "name", "role", "archived", "archived_at", "created_at", "updated_at",
                  "near_duplicate_policy", "near_duplicate_threshold", "recall_defaults",
                  "rollups", "consolidation", "memory_mode", "gateway", "audit_reads",
                  "retention_days"]
        read_only_fields = fields

    def to_representation(self, namespace: Namespace) -> dict:
        data = super().to_representation(namespace)
        principal = self.context.get("principal")
        if data.get("gateway") and not (principal and principal.can(Action.MANAGE,
                                                                    namespace.pk)):
            # Upstream URLs and key file names are for those who manage the namespace.
            data["gateway"] = {k: v for k, v in data["gateway"].items() if k != "upstreams"}
        return data

    def get_archived(self, namespace: Namespace) -> bool:
        return namespace.archived_at is not None

    def get_role(self, namespace: Namespace) -> str | None:
        principal = self.context.get("principal")
        role = principal.role_in(namespace.pk) if principal else None
        return role.label if role else None


def _render(request, namespace_or_list, many: bool = False):
    return NamespaceSerializer(namespace_or_list, many=many, context={"principal": request.user}).data


class NamespaceListView(KnownQueryParams, APIView):
    @extend_schema(summary="Namespaces the caller can see", responses=NamespaceSerializer(many=True))
    def get(self, request):
        return Response(_render(request, namespaces.list_namespaces(request.user), many=True))

    @extend_schema(summary="Create a namespace (system admin)", request=namespaces.NamespaceCreate,
                   responses={201: NamespaceSerializer})
    def post(self, request):
        namespace = namespaces.create(request.user, request.data)
        return Response(_render(request, namespace), status=status.HTTP_201_CREATED)


class NamespaceDetailView(KnownQueryParams, APIView):
    @extend_schema(summary="A namespace", responses=NamespaceSerializer)
    def get(self, request, slug: str):
        return Response(_render(request, namespaces.get_namespace(request.user, slug)))

    @extend_schema(summary="Rename or configure (team admin); archive (system admin)",
                   request=namespaces.NamespaceUpdate, responses=NamespaceSerializer)
    def patch(self, request, slug: str):
        return Response(_render(request, namespaces.update(request.user, slug, request.data)))

    @extend_schema(summary="Delete a namespace with its memories, keys and vectors (system admin)",
                   responses={204: None})
    def delete(self, request, slug: str):
        namespaces.delete(request.user, slug)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberListView(KnownQueryParams, APIView):
    @extend_schema(summary="A namespace's members and their roles (team admin)",
                   responses={200: inline_serializer("Member", {
                       "username": serializers.CharField(),
                       "role": serializers.CharField()}, many=True)})
    def get(self, request, slug: str):
        return Response([{"username": name, "role": role.label}
                         for name, role in namespaces.list_members(request.user, slug).items()])


class MemberDetailView(KnownQueryParams, APIView):
    @extend_schema(summary="Change a member's role (team admin); for anyone else, send an "
                   "invitation (202, the same answer for every name). A system admin sets "
                   "any user's role directly.",
                   request=namespaces.MemberInput, responses={200: dict, 202: InvitedSerializer})
    def put(self, request, slug: str, username: str):
        result = namespaces.set_member(request.user, slug, username, request.data)
        if isinstance(result, Invitation):
            return invited(result)
        return Response({"username": username, "role": result.label})

    @extend_schema(summary="End a membership (team admin)", responses={204: None})
    def delete(self, request, slug: str, username: str):
        namespaces.set_member(request.user, slug, username, None)
        return Response(status=status.HTTP_204_NO_CONTENT)
