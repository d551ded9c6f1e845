"""Per partition, the offsets fetched and not yet handled, and the next offset safe to commit.

The committable offset of a partition is one past the longest run of handled records from the last
commit on: a record still in flight holds back every later offset of its partition, so nothing
unfinished is ever committed. An envelope (herald_common.kafka.envelope) is one offset for several
items: it counts as handled when the last of them is. ``in_flight`` counts items."""

from __future__ import annotations

from collections import defaultdict, deque

from aiokafka import TopicPartition


class Offsets:
    def __init__(self) -> None:
        self._pending: dict[TopicPartition, deque[int]] = defaultdict(deque)
        self._done: dict[TopicPartition, set[int]] = defaultdict(set)
        self._committable: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._left: dict[tuple[TopicPartition, int], int] = {}  # envelopes: items not handled yet
        self.in_flight = 0

    def fetched(self, tp: TopicPartition, offset: int, items: int = 1) -> None:
        self._pending[tp].append(offset)
        if items != 1:
            self._left[(tp, offset)] = items
        self.in_flight += items

    def handled(self, tp: TopicPartition, offset: int) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        left = self._left.get((tp, offset))
        if left is not None:
            if left > 1:
                self._left[(tp, offset)] = left - 1
                return
            del self._left[(tp, offset)]
        pending, done = self._pending[tp], self._done[tp]
        done.add(offset)
        while pending and pending[0] in done:
            first = pending.popleft()
            done.discard(first)
            self._committable[tp] = first + 1

    def abandoned(self, count: int) -> None:
        """Records that will not be handled here (the process is draining): no longer in flight, and
        their offsets stay uncommitted so the next owner gets them."""
        self.in_flight = max(0, self.in_flight - count)

    def to_commit(self) -> dict[TopicPartition, int]:
        return {tp: o for tp, o in self._committable.items() if self._committed.get(tp) != o}

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        self._committed.update(offsets)

    def forget(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            for offset in self._pending.pop(tp, ()):
                self.in_flight = max(0, self.in_flight - self._left.pop((tp, offset), 1))
            self._done.pop(tp, None)
            self._committable.pop(tp, None)
            self._committed.pop(tp, None)
