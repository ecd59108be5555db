"""REST door to the key lifecycle (apps.tenancy.keys): team admins manage their keys."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.query_params import KnownQueryParams
from apps.tenancy import keys
from apps.tenancy.api.serializers import ApiKeySerializer, NewApiKeySerializer, with_secret


class KeyListView(KnownQueryParams, APIView):
    @extend_schema(summary="List a namespace's keys (team admin; never the secrets)",
                   responses=ApiKeySerializer(many=True))
    def get(self, request, slug: str):
        return Response(ApiKeySerializer(keys.list_keys(request.user, slug), many=True).data)

    @extend_schema(summary="Create a key (team admin); the secret is in this response only",
                   request=keys.KeyInput, responses={201: NewApiKeySerializer})
    def post(self, request, slug: str):
        key, raw = keys.create_key(request.user, slug, request.data)
        return Response(with_secret(key, raw), status=status.HTTP_201_CREATED)


class KeyDetailView(KnownQueryParams, APIView):
    patch_body_is_whole = True  # the schema: expires_at is required (apps/core/openapi.py)

    @extend_schema(summary="Set or clear a key's expiry (team admin)", request=keys.KeyUpdate,
                   responses=ApiKeySerializer)
    def patch(self, request, slug: str, key_id: int):
        return Response(ApiKeySerializer(keys.set_expiry(request.user, slug, key_id, request.data)).data)

    @extend_schema(summary="Revoke a key at once (team admin)", responses={204: None})
    def delete(self, request, slug: str, key_id: int):
        keys.revoke_key(request.user, slug, key_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class KeyRotateView(KnownQueryParams, APIView):
    @extend_schema(summary="Rotate a key: a new secret; the old one works for the grace period",
                   request=keys.RotateInput, responses={201: NewApiKeySerializer})
    def post(self, request, slug: str, key_id: int):
        key, raw = keys.rotate_key(request.user, slug, key_id, request.data)
        return Response(with_secret(key, raw), status=status.HTTP_201_CREATED)
