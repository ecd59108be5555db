"""Backup encryption: AES-GCM chunks that round-trip, and refuse a wrong passphrase, a
changed byte, a cut-off end, reordered chunks and trailing data."""

from __future__ import annotations

import io
import os
import struct

import pytest

from apps.core import stream_crypto as crypto
from apps.core.stream_crypto import CHUNK, DecryptingReader, DecryptionError, EncryptingWriter


def _seal(data: bytes, passphrase: str = "correct horse") -> bytes:
    sink = io.BytesIO()
    writer = EncryptingWriter(sink, passphrase)
    for start in range(0, len(data), 70_000):  # written in pieces, as tarfile does
        writer.write(data[start:start + 70_000])
    writer.close()
    return sink.getvalue()


def _open(blob: bytes, passphrase: str = "correct horse") -> bytes:
    reader = DecryptingReader(io.BytesIO(blob), passphrase)
    out = bytearray()
    while piece := reader.read(100_000):
        out += piece
    return bytes(out)


@pytest.fixture(autouse=True)
def cheap_kdf(monkeypatch):
    monkeypatch.setattr(crypto, "N", 1 << 10)  # the format records the cost; tests stay fast


@pytest.mark.parametrize("size", [0, 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5])
def test_round_trip(size):
    data = os.urandom(size)
    blob = _seal(data)
    assert blob.startswith(crypto.MAGIC)
    if size >= 64:
        assert data[:64] not in blob  # no plaintext in the file
    assert _open(blob) == data


def test_a_file_asking_for_an_absurd_key_cost_is_refused():
    blob = bytearray(_seal(b"x"))
    offset = len(crypto.MAGIC) + 16
    blob[offset:offset + 4] = struct.pack(">I", 1 << 30)  # n: 1 GiB x 128 x r of memory
    with pytest.raises(DecryptionError, match="key-derivation cost"):
        _open(bytes(blob))
    with pytest.raises(DecryptionError, match="passphrase is empty"):
        _open(_seal(b"x"), "")


def test_a_wrong_passphrase_is_refused():
    with pytest.raises(DecryptionError, match="wrong passphrase"):
        _open(_seal(b"secret memories"), "battery staple")


def _records(blob: bytes) -> tuple[bytes, list[bytes]]:
    header_size = len(crypto.MAGIC) + 32
    header, rest, records = blob[:header_size], blob[header_size:], []
    while rest:
        size = struct.unpack(">I", rest[:4])[0]
        records.append(rest[:4 + size])
        rest = rest[4 + size:]
    return header, records


def test_changed_cut_reordered_or_extended_backups_are_refused():
    blob = _seal(os.urandom(2 * CHUNK + 10))
    header, records = _records(blob)
    assert len(records) == 3
    flipped = bytearray(blob)
    flipped[len(header) + 100] ^= 1
    cases = {
        "a changed byte": bytes(flipped),
        "cut after a chunk": header + records[0] + records[1],
        "reordered": header + records[1] + records[0] + records[2],
        "trailing data": blob + b"x",
    }
    for name, broken in cases.items():
        with pytest.raises(DecryptionError):
            _open(broken)
            pytest.fail(f"{name} was accepted")
