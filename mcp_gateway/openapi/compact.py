"""Ingest results made compact: equal schema parts shared, and the whole copied into fresh memory.

A result shares strings with the parsed document (json.loads' keys, descriptions, enum values)
and is allocated among the parser's and the converter's short-lived objects. Once those are
freed, the few result objects left in each of Python's allocator arenas keep the whole arena:
for Microsoft Graph beta (22k tools) about 240 MB of RSS beyond the ~150 MB the result holds.
A copy made once the transient objects are gone fills the holes they left, and the original's
arenas empty out and are released. Before copying, equal parts of schemas are made one object
(half of Graph beta's schema objects are repeats). bench/ingest_memory.py measures both.

The copy is a pickle round trip, in batches with one memo, so objects shared between tools
stay shared and the GIL is let go between batches (ingest runs in a worker thread beside the
event loop). An ingest result (`openapi.tools.IngestResult`) is plain data; a `LazyValidator`
is copied as its schema (see its `__reduce__`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import io
import operator
import pickle
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

from mcp_gateway.definitions import (
    BodyPlan,
    EncodingPlan,
    Issue,
    OperationPlan,
    ParamPlan,
    SecurityScheme,
    ToolDefinition,
)


class _Result(Protocol):
    tools: list[ToolDefinition]


R = TypeVar("R", bound=_Result)

BATCH = 256  # tools per pickle batch: a few milliseconds each


def compacted(make: Callable[[], R]) -> R:
    """`make()`, copied into fresh memory once everything else `make` allocated is freed.

    The cyclic collector is paused meanwhile: parsing and ingesting Graph beta make few cycles
    (25 objects) but millions of containers, whose full collections took 2.5 of its 6.3 s."""
    with _collector_paused():
        result = make()
        _share_schemas(result.tools)
        buffer = io.BytesIO()
        pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
        pickler.dispatch_table = _REDUCERS
        tools = result.tools
        batches = 0
        for start in range(0, len(tools), BATCH):
            pickler.dump(tools[start : start + BATCH])
            batches += 1
        pickler.dump(result)  # (its tools are in the memo already)
        del result, tools, pickler
        gc.collect()  # the few cycles: what of the original they hold leaves its holes for the copy
        buffer.seek(0)
        unpickler = pickle.Unpickler(buffer)
        for _ in range(batches):
            unpickler.load()
        copy: R = unpickler.load()
    return copy


def _share_schemas(tools: list[ToolDefinition]) -> None:
    """Make equal parts of the tools' schemas one object, in place (a tool's own `input_schema`
    object stays: its validator holds it).

    Of Graph beta's 350k schema dicts 65k differ (`{"enum": [".", ".."]}` 45k times, `{}` 37k
    times...), and 61k strings `"string"` are distinct objects (json.loads makes each value anew;
    keys it makes once per document). Schemas are never changed after ingest, so sharing is safe,
    as the `$defs` converted once and used by many tools already are.
    """
    strings: dict[str, str] = {}
    parts: dict[tuple[Any, ...], Any] = {}  # shape -> the one object of that shape
    done: dict[int, Any] = {}  # id of a dict or list seen -> its shared equal

    def share(node: Any) -> Any:
        kind = type(node)
        if kind is str:
            return strings.setdefault(node, node)
        if kind is not dict and kind is not list:
            return node
        found = done.get(id(node))
        if found is not None:
            return found
        shape: list[Any] = [kind]
        for key, value in node.items() if kind is dict else enumerate(node):
            one = share(value)
            if one is not value:
                node[key] = one
            shape.append(key)
            if type(one) in _BY_ID:
                shape.append(id(one))
            else:  # numbers by type and spelling: `1`, `1.0` and `True` are equal in Python, not in a schema
                shape.append(type(one))
                shape.append(repr(one))
        found = done[id(node)] = parts.setdefault(tuple(shape), node)
        return found

    for tool in tools:
        share(tool.input_schema)
        if tool.output_schema is not None:
            tool.output_schema = share(tool.output_schema)


_BY_ID = (str, dict, list)  # (a shape holds them by identity: they are shared first)


def _reduce(cls: type, values: Callable[[Any], tuple[Any, ...]], obj: Any) -> tuple[type, tuple[Any, ...]]:
    return cls, values(obj)


# The result's dataclasses, pickled as their constructor's arguments: their own reduction (slots
# dataclasses' __getstate__, in Python, calling `fields()` for each object) takes twice as long.
_REDUCERS: dict[type, Any] = {
    cls: functools.partial(_reduce, cls, operator.attrgetter(*(f.name for f in dataclasses.fields(cls))))
    for cls in (ToolDefinition, OperationPlan, ParamPlan, BodyPlan, EncodingPlan, SecurityScheme, Issue)
}


_pauses = 0  # copies being made now
_was_enabled = True  # the collector's state before the first of them
_pauses_lock = threading.Lock()


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic collector off (ingests may overlap: the last one done turns it back on, if it
    was on). Explicit `gc.collect()` still works."""
    global _pauses, _was_enabled
    with _pauses_lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pauses_lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                gc.enable()
