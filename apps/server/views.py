"""Liveness and readiness probes (no authentication: they reveal nothing tenant-specific),
and the Prometheus metrics (a bearer token of their own)."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
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
        from apps.server.backup import restoring

        if restoring():
            checks["restore"] = "error: a restore has not finished (run manage.py restore again)"
        ready = all(v == "ok" for v in checks.values())
        body = {"status": "ready" if ready else "unavailable", "checks": checks}
        if checks["database"] == "ok":
            body["outbox_backlog"] = IndexOutbox.objects.count()
        return Response(body, status=200 if ready else 503)


def metrics_view(request):
    """Prometheus text format: django-prometheus' series and MemoryWeb's (apps/ops/metrics.py).

    Off (404) unless MEMORYWEB_METRICS_TOKEN is set; then only with
    ``Authorization: Bearer <token>``, compared in constant time. Not a DRF view: a
    scrape is neither a principal nor subject to the API's rate limit.
    """
    token = settings.MEMORYWEB_METRICS_TOKEN
    if not token:
        return JsonResponse({"error": {"code": "not_found", "message": "metrics are off: set "
                             "MEMORYWEB_METRICS_TOKEN to turn them on."}}, status=404)
    given = request.headers.get("Authorization", "")
    scheme, _, credential = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(credential.strip().encode(),
                                                             token.encode()):
        response = JsonResponse({"error": {"code": "not_authenticated", "message":
                                 "send Authorization: Bearer <MEMORYWEB_METRICS_TOKEN>."}},
                                status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
