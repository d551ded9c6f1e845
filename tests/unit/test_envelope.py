"""Envelopes: framing, cutting, opening, and offsets that wait for every item of one."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from herald_common.kafka import Offsets, open_record
from herald_common.kafka.envelope import MARK, MAX_BYTES, MAX_ITEMS, chunks, pack, unpack


def _record(value: bytes, headers: list[tuple[str, bytes]], key: bytes | None = None) -> ConsumerRecord:
    return ConsumerRecord("t", 3, 41, 0, 0, key, value, None, 0, len(value), headers)


def test_items_keep_their_keys_and_values_in_order() -> None:
    items = [(b"tenant:c1", b'{"a":1}'), (None, b""), (b"", b"x" * 70_000), (b"k\x00", b"\xff")]
    assert unpack(pack(items)) == items


def test_a_truncated_or_empty_envelope_is_refused() -> None:
    framed = pack([(b"k", b"value")])
    for bad in (framed[:-1], framed[:5], b""):
        try:
            unpack(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was read as an envelope")


def test_envelopes_are_cut_by_count_and_by_bytes() -> None:
    many = [(b"k", b"v")] * (MAX_ITEMS * 2 + 1)
    assert [len(c) for c in chunks(many)] == [MAX_ITEMS, MAX_ITEMS, 1]
    big = [(None, b"x" * (MAX_BYTES // 3))] * 7
    cut = list(chunks(big))
    assert sum(len(c) for c in cut) == 7 and all(len(pack(c)) <= MAX_BYTES for c in cut)
    huge = [(None, b"x" * (MAX_BYTES * 2)), (None, b"y")]
    assert [len(c) for c in chunks(huge)] == [1, 1]  # an item over the mark travels alone


def test_an_envelope_opens_into_records_of_its_own_and_anything_else_stays_as_it_is() -> None:
    rec = _record(pack([(b"a", b"1"), (b"b", b"2")]), list(MARK))
    opened = open_record(rec)
    assert [(r.key, r.value, r.offset, r.partition, r.headers) for r in opened] == [
        (b"a", b"1", 41, 3, ()),
        (b"b", b"2", 41, 3, ()),
    ]
    plain = _record(b'{"x":1}', [("other", b"1")], b"k")
    assert open_record(plain) == [plain]
    broken = _record(b"\x00\x00", list(MARK))
    assert open_record(broken) == [broken]  # its handler refuses it (dead letter)


def test_an_envelope_offset_is_committable_only_when_its_last_item_is_handled() -> None:
    tp = TopicPartition("t", 0)
    offsets = Offsets()
    offsets.fetched(tp, 10, items=3)
    offsets.fetched(tp, 11)
    assert offsets.in_flight == 4
    offsets.handled(tp, 11)
    offsets.handled(tp, 10)
    offsets.handled(tp, 10)
    assert offsets.to_commit() == {} and offsets.in_flight == 1
    offsets.handled(tp, 10)
    assert offsets.to_commit() == {tp: 12} and offsets.in_flight == 0
    offsets.fetched(tp, 12, items=5)
    offsets.forget([tp])
    assert offsets.in_flight == 0
