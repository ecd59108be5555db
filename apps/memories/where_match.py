"""Chroma's ``where`` filters evaluated in Python, for the small-namespace index
(apps/memories/small_index.py), which keeps a namespace's vectors and filter fields
outside Chroma and must select exactly what Chroma would.

The clauses recall, grants, near-duplicate checks and erasure build (channels._where,
sharing._grant_where, vector_nearest, VectorStore.context_holders) use ``{key: value}``
and the operators ``$eq $ne $gt $gte $lt $lte $in $nin`` joined by ``$and``/``$or``.
Semantics follow Chroma 1.5.9 (pinned by tests/memories/test_where_match.py, which asks
a real Chroma collection the same filters):

- values have four types: bool, int, float, str. A bool or a str matches only a value
  of its own type (``True`` never equals ``1``, ``"1"`` never equals ``1``);
- an int and a float compare as numbers, but not by exact value: an int operand is
  compared with a stored float as ``float(operand)``; a float operand is compared with
  a stored int truncated toward zero and clamped to 64 bits (``{"$eq": 0.5}`` matches
  ``0``, ``{"$gt": -0.5}`` does not match ``0``, ``{"$gte": 1.7}`` matches ``1``);
- ``$ne`` is exactly ``not $eq`` and ``$nin`` exactly ``not $in``: they match a record
  that lacks the key or holds another type; every other operator needs the key present;
- ``$gt``/``$gte``/``$lt``/``$lte`` take an int or float (not a bool) and match only
  stored ints and floats;
- refused (ValueError here, an error from Chroma): an object with other than one key,
  an operator object with other than one operator, ``$and``/``$or`` without a list of at
  least two clauses, ``$in``/``$nin`` without a non-empty list of one type (``[1, 2.5]``
  mixes int and float), a ``None``/list/dict value, NaN or infinity, an int outside 64
  bits, a ``$``-key other than ``$and``/``$or``. ``{}`` or None is no filter (callers
  hand Chroma ``where or None``). ``$contains``/``$not_contains`` (which Chroma accepts)
  are refused too: nobody builds them.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

Match = Callable[[Mapping[str, Any]], bool]

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return None


def _operand(value: Any) -> str:
    """The type of a filter value, or ValueError where Chroma refuses it."""
    kind = _kind(value)
    if kind is None:
        raise ValueError(f"unsupported filter value {value!r}")
    if kind == "float" and not math.isfinite(value):
        raise ValueError(f"filter value {value!r} is not finite")
    if kind == "int" and not _I64_MIN <= value <= _I64_MAX:
        raise ValueError(f"filter value {value!r} is outside 64 bits")
    return kind


def _test(stored: Any, wanted: Any, compare: Callable[[Any, Any], bool]) -> bool:
    """``compare(stored, wanted)`` as Chroma does it (False for a missing key)."""
    have, want = _kind(stored), _kind(wanted)
    if have == want:
        return compare(stored, wanted)
    if have == "float" and want == "int":
        return compare(stored, float(wanted))
    if have == "int" and want == "float":
        return compare(stored, max(_I64_MIN, min(_I64_MAX, int(wanted))))
    return False


def _operator(key: str, op: str, operand: Any) -> Match:
    if op in ("$eq", "$ne"):
        _operand(operand)
        if op == "$eq":
            return lambda meta: key in meta and _test(meta[key], operand, operator.eq)
        return lambda meta: not (key in meta and _test(meta[key], operand, operator.eq))
    if op in ("$in", "$nin"):
        if not isinstance(operand, list) or not operand or \
                len({_operand(value) for value in operand}) != 1:
            raise ValueError(f"{op} takes a non-empty list of one type, got {operand!r}")
        values = list(operand)

        def found(meta: Mapping[str, Any]) -> bool:
            return key in meta and any(_test(meta[key], v, operator.eq) for v in values)
        return found if op == "$in" else lambda meta: not found(meta)
    compare = _ORDER.get(op)
    if compare is None:
        raise ValueError(f"unsupported where operator {op!r}")
    if _operand(operand) not in ("int", "float"):
        raise ValueError(f"{op} takes a number, got {operand!r}")
    return lambda meta: _kind(meta.get(key)) in ("int", "float") and \
        _test(meta[key], operand, compare)


def compile_where(where: Mapping[str, Any] | None) -> Match | None:
    """A predicate over one record's metadata doing what Chroma's ``where`` does; None
    for no filter. Raises ValueError for a clause Chroma would refuse."""
    if not where:
        return None
    return _clause(where)


def _clause(where: Any) -> Match:
    if not isinstance(where, Mapping) or len(where) != 1:
        raise ValueError(f"a where clause is an object with one key, got {where!r}")
    ((key, value),) = where.items()
    if key in ("$and", "$or"):
        if not isinstance(value, list) or len(value) < 2:
            raise ValueError(f"{key} takes a list of at least two clauses, got {value!r}")
        parts = [_clause(part) for part in value]
        if key == "$and":
            return lambda meta: all(part(meta) for part in parts)
        return lambda meta: any(part(meta) for part in parts)
    if not isinstance(key, str) or key.startswith("$"):
        raise ValueError(f"unsupported where key {key!r}")
    if isinstance(value, Mapping):
        if len(value) != 1:
            raise ValueError(f"one operator per key, got {value!r}")
        ((op, operand),) = value.items()
        return _operator(key, op, operand)
    return _operator(key, "$eq", value)
