"""Output shapes of the timeline API, for the OpenAPI schema only: the rows themselves come
from apps/timeline/representation.py (every door formats nodes and grips with it)."""

from __future__ import annotations

from rest_framework import serializers

from apps.timeline.models import Level, NodeStatus


class NodeSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    namespace = serializers.CharField()
    level = serializers.ChoiceField(choices=Level.choices)
    start = serializers.DateTimeField(help_text="UTC. A segment: its first memory's time.")
    end = serializers.DateTimeField(help_text="UTC, exclusive (a segment: its last memory's "
                                    "time, inclusive).")
    agent_id = serializers.CharField(help_text='"" for the whole namespace\'s timeline.')
    session_id = serializers.CharField(help_text="A segment's session; empty above.")
    summary = serializers.CharField(help_text="Its parts, one per line; empty when nothing "
                                    "is summarised (yet).")
    source_count = serializers.IntegerField(help_text="Memories the period covers.")
    parent = serializers.UUIDField(allow_null=True)
    status = serializers.ChoiceField(choices=NodeStatus.choices)
    summarizer = serializers.CharField()
    built_at = serializers.DateTimeField(allow_null=True)
    memory_id = serializers.UUIDField(allow_null=True, help_text="The summary as a memory of "
                                      "kind summary (recallable).")


class GripSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    node = serializers.UUIDField()
    part = serializers.IntegerField(help_text="Index of the summary part it supports.")
    text = serializers.CharField(help_text="That part's text.")
    excerpt = serializers.CharField(help_text="The words of the source that support it.")
    memory_id = serializers.UUIDField(help_text="The source event or memory.")
    occurred_at = serializers.DateTimeField(help_text="The source's event time.")
    session_id = serializers.CharField()


class NodeDetailSerializer(NodeSerializer):
    children = NodeSerializer(many=True, help_text="The next level down, in time order.")
    grips = GripSerializer(many=True)


class ExpandSerializer(serializers.Serializer):
    grip = GripSerializer()
    session_id = serializers.CharField()
    before = serializers.ListField(child=serializers.DictField(), help_text="Up to `before` "
                                   "memories before the source, in conversation order, each "
                                   "as GET /api/v1/memories/{id} returns it.")
    source = serializers.DictField(help_text="The grip's source memory (or event).")
    after = serializers.ListField(child=serializers.DictField(), help_text="Up to `after` "
                                  "memories after it.")
