"""The default DRF filter backend scopes any generic list to the caller's namespaces."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from rest_framework.generics import ListAPIView
from rest_framework.test import APIRequestFactory, force_authenticate

from apps.memories.api.serializers import MemorySerializer
from apps.memories.models import Memory, MemoryVersion
from apps.tenancy.principal import Principal


class CarelessMemoryList(ListAPIView):
    """A list view that forgets to scope its queryset."""

    queryset = Memory.objects.select_related("namespace")
    serializer_class = MemorySerializer
    pagination_class = None


class CarelessVersionList(ListAPIView):
    """Version rows have no ``for_principal`` (they are read through their memory)."""

    queryset = MemoryVersion.objects.all()
    serializer_class = MemorySerializer
    pagination_class = None


def _list(view, caller):
    request = APIRequestFactory().get("/careless")
    force_authenticate(request, user=Principal.for_key(caller.key))
    return view.as_view()(request)


def test_an_unscoped_list_view_is_scoped_anyway(stored, outsider, agent):
    mine = stored("alpha's note")
    outsider.post("/api/v1/memories", {"content": "beta's note"})
    rows = _list(CarelessMemoryList, outsider).data
    assert [row["namespace"] for row in rows] == ["beta"]
    assert mine["id"] in {row["id"] for row in _list(CarelessMemoryList, agent).data}


def test_a_list_of_a_model_without_scope_is_a_configuration_error(agent):
    with pytest.raises(ImproperlyConfigured, match="for_principal"):
        _list(CarelessVersionList, agent)
