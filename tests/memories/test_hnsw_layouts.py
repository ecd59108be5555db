"""The unused capacity of HNSW files in each layout hnswlib leaves on disk
(apps/memories/chroma_files.py ``hnsw_layout``, ``zero_unused_capacity``).

hnswlib writes its initial allocation (100 slots in Chroma) when it creates
``data_level0.bin``, then only the elements it changes; a resize raises the capacity in
the header and never grows the file. Three layouts follow, built here as files (header
numbers as chromadb 1.5.9 wrote them, measured): an unresized index (file = capacity),
a resized one (file = count: nothing unused on disk), and one whose capacity grew while
few elements were written (file = 100 slots, count below: the slots between are
malloc'd bytes, which held an erased collection's vectors in a measured run)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from apps.memories import chroma_files

ELEMENT = 1676  # bytes a slot, 384 dimensions


def _segment(root: Path, capacity: int, count: int, slots: int, planted_slot: int | None) -> Path:
    directory = root / str(uuid.uuid4())
    directory.mkdir()
    head = chroma_files._HNSW_HEAD.pack(chroma_files._HNSW_VERSION, 0, capacity, count, ELEMENT)
    (directory / chroma_files.HNSW_HEADER).write_bytes(head + bytes(64))
    data = bytearray(b"\x01" * (count * ELEMENT) + bytes((slots - count) * ELEMENT))
    if planted_slot is not None:  # what a reused heap block leaves past the count
        data[planted_slot * ELEMENT: planted_slot * ELEMENT + 32] = b"\x7f" * 32
    (directory / chroma_files.HNSW_DATA).write_bytes(bytes(data))
    return directory


@pytest.mark.parametrize(("capacity", "count", "slots", "planted"), [
    (100, 1, 100, 50),       # unresized: the file is the whole capacity
    (1024, 600, 600, None),  # resized: the file ends at the count
    (128, 60, 100, 80),      # capacity grew while few were written: 40 unused slots on disk
])
def test_unused_slots_are_read_and_zeroed_in_every_layout(tmp_path, caplog, capacity, count,
                                                          slots, planted):
    directory = _segment(tmp_path, capacity, count, slots, planted)
    layout = chroma_files.hnsw_layout(directory)
    assert layout is not None and layout.slots == slots
    dirty = 32 if planted is not None else 0
    assert chroma_files.unused_capacity_bytes(tmp_path) == dirty
    assert chroma_files.zero_unused_capacity(tmp_path) == dirty
    assert chroma_files.unused_capacity_bytes(tmp_path) == 0
    data = (directory / chroma_files.HNSW_DATA).read_bytes()
    assert len(data) == slots * ELEMENT  # nothing written past the end of the file
    assert data[:count * ELEMENT] == b"\x01" * (count * ELEMENT)  # the elements untouched
    assert "not in a layout" not in caplog.text


def test_a_file_it_cannot_read_is_counted_whole_by_the_check(tmp_path):
    directory = _segment(tmp_path, 128, 60, 100, 80)
    data = directory / chroma_files.HNSW_DATA
    data.write_bytes(data.read_bytes() + b"\x05" * 7)  # not a whole number of slots
    assert chroma_files.hnsw_layout(directory) is None
    assert chroma_files.unused_capacity_bytes(tmp_path) == 60 * ELEMENT + 32 + 7
