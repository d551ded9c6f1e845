"""A micro-batcher: messages submitted concurrently go to the provider together.

Each caller awaits :meth:`MicroBatcher.submit` for its own message and gets its own outcome (a
:class:`SendResult`, or its :class:`ProviderError` raised). Pending messages are flushed when
``max_size`` of them are waiting or ``linger_s`` after the first one arrived, whichever comes first,
so a lone message waits at most ``linger_s``. At most ``max_inflight`` batches are in flight; the
others queue behind them.

Batches only form when many messages are submitted at once: the sender's consumer runner must
handle that many records concurrently (``HERALD_CONSUMER_CONCURRENCY``), since every record's
handler waits for its own message's outcome before the batch's offsets are committed.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Sequence

from herald_providers.base import OutboundMessage, Outcome, ProviderError, SendResult, TransientError

SendBatch = Callable[[Sequence[OutboundMessage]], Awaitable[list[Outcome]]]
_Pending = tuple[OutboundMessage, "asyncio.Future[SendResult]"]


class MicroBatcher:
    def __init__(
        self, send_batch: SendBatch, *, max_size: int = 1000, linger_s: float = 0.02, max_inflight: int = 8
    ) -> None:
        if max_size < 1 or linger_s < 0 or max_inflight < 1:
            raise ValueError("max_size >= 1, linger_s >= 0 and max_inflight >= 1")
        self._send_batch = send_batch
        self.max_size = max_size
        self.linger_s = linger_s
        self._slots = asyncio.Semaphore(max_inflight)
        self._pending: list[_Pending] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches_sent = 0

    async def submit(self, msg: OutboundMessage) -> SendResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SendResult] = loop.create_future()
        self._pending.append((msg, future))
        if len(self._pending) >= self.max_size:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.linger_s, self._flush)
        return await future

    async def close(self) -> None:
        """Send what is pending and wait for every batch in flight."""
        self._flush()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        batch = [(m, f) for m, f in batch if not f.done()]  # callers cancelled meanwhile
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Pending]) -> None:
        async with self._slots:
            try:
                outcomes = await self._send_batch([m for m, _ in batch])
                self.batches_sent += 1
            except Exception as exc:  # a bug or an unexpected failure: every message gets it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(
                            copy.copy(exc)
                            if isinstance(exc, ProviderError)
                            else TransientError(f"batch failed: {exc!r}"[:300], code="batch_error")
                        )
                return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, ProviderError):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
