"""A tiny time-bounded cache for data that may be a few seconds stale (templates, tenants, API keys)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

V = TypeVar("V")
_MISSING = object()


class TTLCache(Generic[V]):
    def __init__(self, ttl_s: float, max_items: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def get(self, key: str) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if expires < time.monotonic():
            del self._items[key]
            return None
        return value

    async def get_or_load(self, key: str, load: Callable[[], Awaitable[V | None]]) -> V | None:
        """The cached value, else ``load()``'s (remembered unless it is None: a miss is not cached)."""
        value = self.get(key)
        if value is None:
            value = await load()
            if value is not None:
                self.put(key, value)
        return value

    def put(self, key: str, value: V) -> None:
        self._items[key] = (time.monotonic() + self.ttl_s, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    def drop(self, key: str) -> None:
        self._items.pop(key, None)
