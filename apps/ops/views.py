"""Liveness and readiness probes (no authentication: they reveal nothing tenant-specific)."""

from __future__ import annotations

from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.memories.models import IndexOutbox
from apps.memories.vectorstore import get_vector_store


class HealthView(APIView):
    """The process is up and serving. Load balancers restart it when this fails."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(summary="Liveness", responses=inline_serializer(
        "Health", {"status": serializers.CharField()}))
    def get(self, request):
        return Response({"status": "ok"})


class ReadinessView(APIView):
    """Dependencies reachable: the database and the vector store. 503 otherwise."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(summary="Readiness", responses=inline_serializer("Readiness", {
        "status": serializers.CharField(), "checks": serializers.DictField(),
        "outbox_backlog": serializers.IntegerField(required=False)}))
    def get(self, request):
        checks: dict[str, str] = {}
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:  # report, don't crash: this is the probe
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            get_vector_store().heartbeat()
            checks["vector_store"] = "ok"
        except Exception as exc:
            checks["vector_store"] = f"error: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        body = {"status": "ready" if ready else "unavailable", "checks": checks}
        if checks["database"] == "ok":
            body["outbox_backlog"] = IndexOutbox.objects.count()
        return Response(body, status=200 if ready else 503)
