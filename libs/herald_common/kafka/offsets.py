"""Per partition, the offsets fetched and not yet handled, and the next offset safe to commit.

The committable offset of a partition is one past the longest run of handled records from the last
commit on: a record still in flight holds back every later offset of its partition, so nothing
unfinished is ever committed."""

from __future__ import annotations

from collections import defaultdict, deque

from aiokafka import TopicPartition


class Offsets:
    def __init__(self) -> None:
        self._pending: dict[TopicPartition, deque[int]] = defaultdict(deque)
        self._done: dict[TopicPartition, set[int]] = defaultdict(set)
        self._committable: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self.in_flight = 0

    def fetched(self, tp: TopicPartition, offset: int) -> None:
        self._pending[tp].append(offset)
        self.in_flight += 1

    def handled(self, tp: TopicPartition, offset: int) -> None:
        pending, done = self._pending[tp], self._done[tp]
        done.add(offset)
        self.in_flight = max(0, self.in_flight - 1)
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
            self.in_flight = max(0, self.in_flight - len(self._pending.pop(tp, ())))
            self._done.pop(tp, None)
            self._committable.pop(tp, None)
            self._committed.pop(tp, None)
