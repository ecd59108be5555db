"""The registry's ``subject_*`` operations come as a set (apps/memories/stores.py): a
store that could count a subject's rows but not erase them would leave an erasure that
can never be certified."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from apps.memories import stores


def test_a_store_with_only_some_subject_operations_is_refused():
    half = stores.Store("half_subject", "half", "a test store", stores.ErasedBy.ERASURE,
                        subject_count=lambda namespace, field, value, before=None: 0)
    with pytest.raises(ImproperlyConfigured, match="only some of subject_count"):
        stores.register(half)
    assert stores.get("half_subject") is None


def test_the_gateway_stores_declare_all_three():
    for name in ("gateway_facts", "gateway_exchanges", "gateway_traces"):
        store = stores.get(name)
        assert store.subject_count and store.subject_erase and store.subject_values, name
