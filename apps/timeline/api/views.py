"""REST door to the timeline: translate HTTP <-> the timeline services, nothing more."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.query_params import KnownQueryParams
from apps.memories.representation import memory_row
from apps.tenancy.services import AGENT_ID_RE
from apps.timeline import conf, services
from apps.timeline.api.serializers import ExpandSerializer, NodeDetailSerializer, NodeSerializer
from apps.timeline.models import RollupNode
from apps.timeline.reading import LEVELS
from apps.timeline.representation import grip_row, node_row

_RANGE = ("A date (YYYY-MM-DD) or an ISO 8601 date-time, UTC unless it says otherwise; "
          "years 1 to 9998.")
#: ``from`` / ``to`` in the schema: a date or a date-time.
_MOMENT = {"anyOf": [{"type": "string", "format": "date"},
                     {"type": "string", "format": "date-time"}]}


class TimelineView(KnownQueryParams, GenericAPIView):
    """The nodes of one level (day by default) whose period overlaps the range, oldest
    first, paginated like memories: the whole namespace's timeline, or an agent's."""

    query_params = {"level", "from", "to", "namespace", "agent_id", "limit", "offset"}
    serializer_class = NodeSerializer
    queryset = RollupNode.objects.none()  # the schema's; get() asks the service
    filter_backends: list = []

    @extend_schema(
        summary="Browse the timeline: one level's summaries over a range, oldest first",
        parameters=[
            OpenApiParameter("level", OpenApiTypes.STR, enum=list(LEVELS),
                             description="segment, day (default), week, month or year"),
            OpenApiParameter("from", _MOMENT, description="Nodes whose period ends "
                             f"after this. {_RANGE}"),
            OpenApiParameter("to", _MOMENT, description="Nodes whose period starts "
                             f"before this (a date: through the end of that day). {_RANGE}"),
            OpenApiParameter("agent_id", {"type": "string", "pattern": AGENT_ID_RE.pattern},
                             description="An agent's own "
                             "timeline (built with manage.py rollup --agent); absent: the "
                             "whole namespace's."),
            OpenApiParameter("namespace", OpenApiTypes.STR, description="Namespace slug "
                             "(system-admin keys)."),
        ],
        responses=NodeSerializer(many=True))
    def get(self, request):
        nodes = services.browse(request.user, request.query_params)
        page = self.paginate_queryset(nodes)
        return self.get_paginated_response([node_row(node) for node in page])


class NodeView(KnownQueryParams, APIView):
    """One node: its summary, its children (the next level down) and its grips, each
    tying a part of the summary to a source event or memory and the excerpt quoted."""

    @extend_schema(summary="Open a timeline node: its summary, children and grips",
                   responses=NodeDetailSerializer)
    def get(self, request, node_id: str):
        opened = services.open_node(request.user, node_id)
        return Response({**node_row(opened.node),
                         "children": [node_row(child) for child in opened.children],
                         "grips": [grip_row(grip) for grip in opened.grips]})


class GripExpandView(KnownQueryParams, APIView):
    """A grip's source with the memories before and after it in conversation order (the
    same session, by event time)."""

    query_params = {"before", "after"}

    @extend_schema(
        summary="Expand a grip: its source and the memories around it in conversation order",
        parameters=[OpenApiParameter(name, {"type": "integer", "minimum": 0,
                                            "maximum": conf.EXPAND_MAX},
                                     description=f"Memories {name} "
                                     f"the source (default {conf.EXPAND_DEFAULT}, at most "
                                     f"{conf.EXPAND_MAX}).")
                    for name in ("before", "after")],
        responses=ExpandSerializer)
    def get(self, request, grip_id: str):
        expanded = services.expand_grip(request.user, grip_id, request.query_params)
        return Response({"grip": grip_row(expanded.grip), "session_id": expanded.source.session_id,
                         "before": [memory_row(m) for m in expanded.before],
                         "source": memory_row(expanded.source),
                         "after": [memory_row(m) for m in expanded.after]})
