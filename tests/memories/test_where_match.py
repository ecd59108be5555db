"""apps/memories/where_match.py against a real embedded Chroma: every ``where`` clause
must select exactly the ids Chroma's ``collection.get(where=...)`` selects, and a clause
Chroma refuses must raise ValueError. Hand-picked clauses (each operator, each value type
against keys holding other types, missing keys, nested ``$and``/``$or`` as
sharing._grant_where builds them) and a few hundred seeded random ones."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import chromadb
import numpy as np
import pytest

from apps.memories.where_match import compile_where

OPS = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"]
#: Every value type, and the values where int/float/bool/str meet: 1 vs 1.0 vs True vs
#: "1", floats a stored int is truncated against (0.5, -0.5, 1.7), timestamps, 2**53.
MIXED: list[Any] = [True, False, 0, 1, -1, -3, 2, 0.0, 1.0, 0.5, -0.5, 1.5, 1.7, -1.5,
                    1.7e9, 1700000000, 1700000000.5, 2**53 + 1, 2.0**53,
                    "1", "True", "", "0", "abc"]
POOLS: dict[str, list[Any]] = {
    "v": MIXED,
    "m:key": ["x", "", "1", 1, 0, -2, 1.0, 0.5, 2.5, True, False],
    "agent_id": ["a1", "a2", "1", 1],
    "session_id": ["s1", "s2", ""],
    "kind": ["note", "fact", "summary", ""],
    "created_ts": [1.7e9, 1700000000, 1700000000.5, 1700000100.25, 1699999999, 0.0],
    "event_ts": [1.7e9, 1700000050.5, 1700000050, -1.0],
    "context_id": ["10", "11", "12"],
    "t:red": [True],
    "t:blue": [True, False],
}
KEYS = [*POOLS, "absent"]  # "absent": a key no record has


def _records() -> dict[str, dict[str, Any]]:
    rng = random.Random(20261207)
    records: dict[str, dict[str, Any]] = {}
    for n in range(60):
        meta = {key: rng.choice(pool) for key, pool in POOLS.items() if rng.random() < 0.65}
        if n < len(MIXED):  # every mixed value stored at least once, under "v"
            meta["v"] = MIXED[n]
        if n < 8:  # and once each in the keys whose type the clauses test most
            meta["m:key"] = POOLS["m:key"][n]
        records[f"r{n:02d}"] = meta or {"kind": "note"}  # Chroma takes no empty metadata
    return records


RECORDS = _records()


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    client = chromadb.PersistentClient(
        path=str(tmp_path_factory.mktemp("chroma")),
        settings=chromadb.config.Settings(anonymized_telemetry=False))
    found = client.create_collection("where-match")
    vectors = np.random.default_rng(8).normal(size=(len(RECORDS), 8)).tolist()
    found.add(ids=list(RECORDS), embeddings=vectors, metadatas=list(RECORDS.values()))
    stored = found.get(include=["metadatas"])
    assert dict(zip(stored["ids"], stored["metadatas"], strict=True)) == RECORDS
    assert all(type(stored_value) is type(RECORDS[i][key])  # 1.0 stays a float, True a bool
               for i, meta in zip(stored["ids"], stored["metadatas"], strict=True)
               for key, stored_value in meta.items())
    yield found


def _compare(collection: Any, where: dict[str, Any]) -> None:
    try:
        chosen = set(collection.get(where=where, include=[])["ids"])
    except Exception:  # Chroma refuses with ValueError or its own InvalidArgumentError
        with pytest.raises(ValueError):
            compile_where(where)
        return
    match = compile_where(where)
    assert match is not None
    assert {i for i, meta in RECORDS.items() if match(meta)} == chosen, json.dumps(where)


def _id(where: Any) -> str:
    return json.dumps(where, separators=(",", ":"))


def _hand_picked() -> list[dict[str, Any]]:
    clauses: list[dict[str, Any]] = []
    for key in ["v", "m:key", "created_ts", "agent_id", "t:blue", "absent"]:
        values = MIXED if key in ("v", "absent") else POOLS[key]
        for value in values:
            clauses.append({key: value})
            clauses.extend({key: {op: value}} for op in OPS[:6])
            clauses.extend({key: {op: [value]}} for op in ("$in", "$nin"))
    clauses += [
        {"v": {"$in": [1, 2]}}, {"v": {"$in": [0.5, 1.7]}}, {"v": {"$nin": [True, False]}},
        {"v": {"$in": ["1", "True", ""]}}, {"v": {"$nin": [0, -1, 2**53 + 1]}},
        {"v": {"$in": ["x", "x"]}}, {"kind": {"$nin": ["summary", "fact"]}},
        {"context_id": {"$in": ["10", "12"]}}, {"absent": {"$nin": ["x"]}},
        # refused by Chroma: mixed or empty lists, a tuple, bad shapes and values
        {"v": {"$in": [1, "1"]}}, {"v": {"$in": [1, 2.5]}}, {"v": {"$in": [True, 1]}},
        {"v": {"$in": []}}, {"v": {"$nin": []}}, {"v": {"$in": 1}}, {"v": {"$in": ("x",)}},
        {"v": {"$in": [None]}}, {"v": None}, {"v": [1]}, {"v": {"$eq": [1]}},
        {"v": {"$eq": None}}, {"v": {"$eq": {"$eq": 1}}}, {"v": {}},
        {"v": {"$gt": 0, "$lt": 2}}, {"v": 1, "kind": "note"}, {"$foo": 1},
        {"$not": {"v": 1}}, {"v": {"$regex": "a"}}, {"$and": [{"v": 1}]}, {"$or": []},
        {"$and": {"v": 1}}, {"$and": [1, 2]}, {"$and": [{"v": 1}, {}]},
        {"$and": [{"v": 1}], "kind": "note"}, {"$or": ({"v": 1}, {"v": 0})},
        {"v": {"$eq": float("inf")}}, {"v": {"$lt": float("nan")}}, {"v": {"$eq": 2**63}},
        {"": 1},
        # nested, and the shapes sharing._grant_where / recall build
        {"$and": [{"agent_id": "a1"}, {"kind": {"$ne": "summary"}}]},
        {"$or": [{"t:red": True}, {"t:blue": True}]},
        {"$and": [{"session_id": {"$ne": ""}}, {"$or": [{"v": 1}, {"m:key": 1}]},
                  {"event_ts": {"$gte": 1700000000}}]},
        {"$or": [
            {"$and": [{"kind": {"$ne": "summary"}}, {"t:red": True},
                      {"created_ts": {"$gte": 1.7e9}}]},
            {"$and": [{"kind": {"$in": ["note", "fact"]}},
                      {"$or": [{"t:red": True}, {"t:blue": True}]},
                      {"created_ts": {"$lt": 1700000100.25}}]},
            {"$and": [{"agent_id": {"$in": ["a2", "1"]}}, {"absent": {"$ne": 1}}]}]},
        {"$and": [{"$or": [{"v": {"$gt": 0}}, {"v": {"$lt": 0}}]}, {"v": {"$ne": 1.0}}]},
        {"$and": [{"v": 1}, {"kind": "note", "agent_id": "a1"}]},  # a multi-key object, nested
    ]
    return clauses


HAND_PICKED = _hand_picked()


@pytest.mark.parametrize("where", HAND_PICKED, ids=[_id(w) for w in HAND_PICKED])
def test_hand_picked_clause_matches_chroma(collection: Any, where: dict[str, Any]) -> None:
    _compare(collection, where)


def _random_clause(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    if depth < 3 and rng.random() < 0.35:
        joiner = rng.choice(["$and", "$or"])
        count = rng.choice([2, 2, 2, 3, 3, 4]) if rng.random() < 0.95 else rng.choice([0, 1])
        return {joiner: [_random_clause(rng, depth + 1) for _ in range(count)]}
    key = rng.choice(KEYS)
    pool = POOLS.get(key, MIXED)
    value = rng.choice(pool if rng.random() < 0.75 else MIXED)
    op = rng.choice([*OPS, "plain"])
    if op == "plain":
        return {key: value}
    if op in OPS[2:6] and rng.random() < 0.85:  # mostly numbers: bools and strs are refused
        value = rng.choice([v for v in pool + MIXED if type(v) in (int, float)])
    if op in ("$in", "$nin"):
        same = [v for v in pool + MIXED if type(v) is type(value)]
        values = [value, *rng.sample(same, k=min(len(same), rng.randint(0, 2)))]
        if rng.random() < 0.1:
            values.append(rng.choice(MIXED))  # likely a second type: refused
        return {key: {op: values}}
    return {key: {op: value}}


RANDOM = [_random_clause(random.Random(f"where-{n}")) for n in range(400)]


@pytest.mark.parametrize("where", RANDOM, ids=[f"random{n}" for n in range(len(RANDOM))])
def test_random_clause_matches_chroma(collection: Any, where: dict[str, Any]) -> None:
    _compare(collection, where)


def test_random_clauses_select_and_refuse(collection: Any) -> None:
    """The random clauses are not all refusals nor all empty selections."""
    refused = chosen = 0
    for where in RANDOM:
        try:
            chosen += bool(collection.get(where=where, include=[])["ids"])
        except Exception:  # refused
            refused += 1
    assert 20 <= refused <= 120 and chosen >= 150, (refused, chosen)


def test_no_filter(collection: Any) -> None:
    """None or ``{}`` is no filter: callers hand Chroma ``where or None`` (Chroma itself
    refuses ``where={}``)."""
    assert compile_where(None) is None and compile_where({}) is None
    assert len(collection.get(where=None, include=[])["ids"]) == len(RECORDS)


@pytest.mark.parametrize("where", [
    {"v": {"$contains": "a"}}, {"v": {"$not_contains": "a"}}, {"v": {"$eq": 2**64}}],
    ids=_id)
def test_refused_here_though_chroma_accepts(collection: Any, where: dict[str, Any]) -> None:
    """Clauses nobody builds: ``$contains``/``$not_contains`` (meant for list values in
    metadata) and an int of 65 bits (Chroma refuses 2**63 but takes 2**64, as the
    largest int64). where_match refuses them rather than guess."""
    collection.get(where=where, include=[])
    with pytest.raises(ValueError):
        compile_where(where)
