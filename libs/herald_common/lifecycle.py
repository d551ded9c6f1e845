"""Process lifecycle: liveness heartbeat, readiness, draining, and scripted shutdown on signals.

First SIGTERM/SIGINT: mark not-ready (``/readyz`` fails at once), set ``stopping`` so loops stop taking
new work and drain within the service's drain timeout. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger()

ReadinessCheck = Callable[[], Awaitable[bool]]


class Lifecycle:
    def __init__(self, liveness_timeout_s: float = 60.0) -> None:
        self.stopping = asyncio.Event()
        self.started = False
        self.liveness_timeout_s = liveness_timeout_s
        self._last_beat = time.monotonic()
        self._checks: dict[str, ReadinessCheck] = {}
        self._signals = 0

    # liveness -------------------------------------------------------------------------------------
    def beat(self) -> None:
        """Called by the service's own loops: proves they are turning."""
        self._last_beat = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self._last_beat < self.liveness_timeout_s

    # readiness ------------------------------------------------------------------------------------
    def add_check(self, name: str, check: ReadinessCheck) -> None:
        self._checks[name] = check

    async def readiness(self) -> dict[str, bool]:
        results: dict[str, bool] = {"started": self.started, "not_draining": not self.stopping.is_set()}
        for name, check in list(self._checks.items()):  # checks may be added meanwhile
            try:
                results[name] = bool(await asyncio.wait_for(check(), timeout=2.0))
            except Exception:
                results[name] = False
        return results

    # shutdown -------------------------------------------------------------------------------------
    def request_stop(self, reason: str = "requested") -> None:
        if not self.stopping.is_set():
            log.info("draining", reason=reason)
            self.stopping.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal, exiting at once", signal=sig.name)
            os._exit(130)
        self.request_stop(sig.name)
