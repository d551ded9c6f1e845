"""Envelopes: many small records of one topic partition carried as one Kafka record.

A record costs the broker, the producer and the consumer the same whatever its size, and Herald's are
small (a status event is ~300 bytes). So where several records without headers go to the same topic
partition at once (:func:`~herald_common.kafka.produce_many`, and every single send made through
:class:`Envelopes` in one event-loop turn), they are written as one envelope: a record marked with the
``herald-envelope`` header whose value frames each item as ``key length`` (4 bytes, -1 for none),
``value length`` (4 bytes), key, value. Items keep their own keys and go to the partition their own key
picks, so per-key order is what it was. The consumer runner opens every envelope into its items
(:func:`open_record`) and hands each to the handler as an ordinary record with its own key and value;
the envelope's offset is committed when all of its items are handled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct
import weakref
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

HEADER = "herald-envelope"
MARK: list[tuple[str, bytes]] = [(HEADER, b"1")]
MAX_ITEMS = 1000
MAX_BYTES = 512 * 1024  # half the record limit: an envelope never nears what the broker accepts
_FRAME = struct.Struct(">iI")

Item = tuple[bytes | None, bytes]


def pack(items: Sequence[Item]) -> bytes:
    parts: list[bytes] = []
    for key, value in items:
        parts.append(_FRAME.pack(-1 if key is None else len(key), len(value)))
        if key is not None:
            parts.append(key)
        parts.append(value)
    return b"".join(parts)


def unpack(value: bytes) -> list[Item]:
    """The items of an envelope's value; ValueError when it is not one."""
    items: list[Item] = []
    view, at, end = memoryview(value), 0, len(value)
    while at < end:
        if at + _FRAME.size > end:
            raise ValueError("truncated envelope")
        klen, vlen = _FRAME.unpack_from(view, at)
        at += _FRAME.size
        key = None
        if klen >= 0:
            key, at = bytes(view[at : at + klen]), at + klen
        if at + vlen > end:
            raise ValueError("truncated envelope")
        items.append((key, bytes(view[at : at + vlen])))
        at += vlen
    if not items:
        raise ValueError("empty envelope")
    return items


def chunks(items: Sequence[Item]) -> Iterator[list[Item]]:
    """``items`` cut into envelopes of at most MAX_ITEMS items and about MAX_BYTES."""
    chunk: list[Item] = []
    size = 0
    for key, value in items:
        grow = len(value) + (len(key) if key else 0) + _FRAME.size
        if chunk and (len(chunk) >= MAX_ITEMS or size + grow > MAX_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append((key, value))
        size += grow
    if chunk:
        yield chunk


def is_envelope(rec: ConsumerRecord) -> bool:
    return any(name == HEADER for name, _ in rec.headers or ())


def open_record(rec: ConsumerRecord) -> list[ConsumerRecord]:
    """The records an envelope carries (each with the envelope's topic, partition and offset), or the
    record itself when it is not an envelope or cannot be read as one (its handler then refuses it)."""
    if not is_envelope(rec) or rec.value is None:
        return [rec]
    try:
        items = unpack(rec.value)
    except (ValueError, struct.error):
        return [rec]
    return [
        dataclasses.replace(
            rec,
            key=key,
            value=value,
            headers=(),
            serialized_key_size=len(key) if key is not None else -1,
            serialized_value_size=len(value),
        )
        for key, value in items
    ]


class Envelopes:
    """Single sends gathered per event-loop turn: ``await envelopes.send(topic, value, key)`` returns
    once the record is acknowledged, as ``send_and_wait`` would, but the records that handlers running
    side by side send in the same turn go out together through :func:`produce_many` (envelopes per
    partition). A produce error reaches every sender of that flush."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self._pending: dict[str, list[tuple[Item, asyncio.Future[None]]]] = defaultdict(list)
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, topic: str, value: bytes, key: bytes | None) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending[topic].append(((key, value), future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, defaultdict(list)
        for topic, entries in pending.items():
            task = asyncio.create_task(self._produce(topic, entries))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _produce(self, topic: str, entries: list[tuple[Item, asyncio.Future[None]]]) -> None:
        from herald_common.kafka.producer import produce_many

        try:
            await produce_many(self.producer, topic, [item for item, _ in entries])
        except Exception as exc:
            for _, future in entries:
                if not future.done():
                    future.set_exception(exc)
            return
        for _, future in entries:
            if not future.done():
                future.set_result(None)


_SHARED: weakref.WeakKeyDictionary[Any, Envelopes] = weakref.WeakKeyDictionary()


def envelopes(producer: AIOKafkaProducer) -> Envelopes:
    """The producer's one :class:`Envelopes`."""
    found = _SHARED.get(producer)
    if found is None:
        found = _SHARED[producer] = Envelopes(producer)
    return found
