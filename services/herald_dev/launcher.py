"""``herald dev``: the whole platform on one machine, on embedded defaults.

Starts (unless the environment already points at one) a Kafka-protocol broker, a Redis-protocol
server, a local SMTP peer and local Twilio, FCM (and, when HERALD_EMAIL_PROVIDERS names it, SendGrid)
peers; creates the topics; starts every service as its own process with JSON logs on stdout (senders
for email, SMS and push on both lanes, the scheduler, the tracker and the webhooks service); serves
the outbox page; seeds a demo tenant whose contact has an email address, a phone and a push token,
and a webhook endpoint (a local receiver that verifies each signed delivery into the outbox), and
prints requests to try.
Ctrl-C stops everything cleanly (services drain first, then the infrastructure).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import aiohttp
from aiohttp import web

from herald_common.channels import CHANNELS
from herald_common.kafka import create_topics
from herald_common.settings import LANES
from herald_common.topics import Topics
from herald_dev.infra import Managed, free_port, port_open, start_broker, start_valkey, wait_http_ok
from herald_dev.outbox import Outbox
from herald_dev.outbox_pages import outbox_app
from herald_dev.peers.local import LocalPeers
from herald_dev.smtp_peer import SmtpCapture, SmtpPeer
from herald_providers.registry import missing_for_channel

Service = tuple[str, list[str]]


def services(channels: Iterable[str] = CHANNELS) -> list[Service]:
    """Every service of the local stack, with senders (both lanes) for ``channels`` only."""
    return [
        ("gateway", ["gateway"]),
        *((f"router-{lane}", ["router", "--lane", lane]) for lane in LANES),
        *(
            (f"sender-{ch}-{lane}", ["sender", "--channel", ch, "--lane", lane])
            for ch in channels
            for lane in LANES
        ),
        ("scheduler", ["scheduler"]),
        ("tracker", ["tracker"]),
        ("webhooks", ["webhooks"]),
        ("campaigns", ["campaigns"]),
    ]


SERVICES: list[Service] = services()


def channels_off(env: Mapping[str, str]) -> dict[str, list[str]]:
    """Channels whose senders could not build their providers under ``env``, with what is missing:
    ``herald dev`` starts no senders for them instead of leaving them in a restart loop."""
    return {ch: missing for ch in CHANNELS if (missing := missing_for_channel(ch, env))}


# The demo tenant, template and contact ``herald dev`` seeds: one contact reachable on every channel.
DEMO = json.loads((Path(__file__).with_name("demo.json")).read_text(encoding="utf-8"))


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _pick_port(preferred: int) -> int:
    return preferred if not port_open("127.0.0.1", preferred) else free_port()


class DevStack:
    def __init__(self, root: Path, seed: bool) -> None:
        self.root = root
        self.seed = seed
        self.infra: list[Managed] = []
        self.children: dict[str, Managed] = {}
        self.smtp: SmtpPeer | None = None
        self.peers = LocalPeers(root, Outbox(root / "outbox"))
        self.env: dict[str, str] = {}
        self.services: list[Service] = SERVICES
        self.channels: list[str] = list(CHANNELS)
        self.stopping = asyncio.Event()

    def start_infra(self) -> None:
        env = dict(os.environ)
        logs = self.root / "logs"
        if "HERALD_KAFKA_BOOTSTRAP" not in env:
            port = _pick_port(9092)
            self.infra.append(start_broker(port, log=logs / "kafka.log"))
            env["HERALD_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{port}"
            say(f"  kafka-protocol broker (Tansu)   127.0.0.1:{port}")
        if "HERALD_REDIS_URL" not in env:
            port = _pick_port(6379)
            self.infra.append(
                start_valkey(port, self.root / "redis", appendonly=True, log=logs / "valkey.log")
            )
            env["HERALD_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
            say(f"  redis-protocol server (Valkey)  127.0.0.1:{port} (AOF in {self.root / 'redis'})")
        if "HERALD_SMTP_HOST" not in env:
            port = _pick_port(2525)
            self.smtp = SmtpPeer(port, SmtpCapture(outbox=Outbox(self.root / "outbox"))).start()
            env["HERALD_SMTP_HOST"], env["HERALD_SMTP_PORT"] = "127.0.0.1", str(port)
            say(f"  SMTP peer (captures into outbox) 127.0.0.1:{port}")
        env.setdefault("HERALD_ADMIN_TOKEN", secrets.token_urlsafe(24))
        env.setdefault("HERALD_LOG_FORMAT", "json")
        self.env = env

    async def start_peers(self, public_base_url: str) -> None:
        """Twilio, FCM (and SendGrid) peers for whatever the environment does not point elsewhere."""
        self.env.setdefault("HERALD_PUBLIC_BASE_URL", public_base_url)
        added = await self.peers.start(self.env, self.env["HERALD_PUBLIC_BASE_URL"])
        self.env.update(added)
        for name, url in self.peers.started.items():
            say(f"  {name} peer (captures into outbox) {url}")

    def start_services(self) -> None:
        off = channels_off(self.env)
        for channel, missing in off.items():
            say(f"  {channel} senders off: {'; '.join(missing)}")
        self.channels = [ch for ch in CHANNELS if ch not in off]
        self.services = services(self.channels)
        for name, args in self.services:
            self._spawn(name, args)

    def _spawn(self, name: str, args: list[str]) -> None:
        env = dict(self.env)
        env["HERALD_HEALTH_PORT"] = str(free_port())  # every service, the gateway too (/metrics is there)
        self.children[name] = Managed(name, [sys.executable, "-m", "herald_cli", *args], env=env).start()

    async def supervise(self) -> None:
        """Restart a service that died on its own (as Kubernetes would), a second later."""
        while not self.stopping.is_set():
            for name, args in self.services:
                child = self.children.get(name)
                if child is not None and not child.alive() and not self.stopping.is_set():
                    say(
                        f"herald dev: {name} exited with {child.proc.returncode if child.proc else '?'}; "
                        "restarting"
                    )
                    self._spawn(name, args)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=1.0)

    async def stop(self) -> None:
        for child in self.children.values():
            child.signal(signal.SIGTERM)
        for child in self.children.values():
            await asyncio.to_thread(child.stop, 30.0)
        if self.smtp is not None:
            self.smtp.stop()
        await self.peers.stop()
        for proc in reversed(self.infra):
            proc.stop()


async def seed_demo(base: str, admin_token: str, webhook: tuple[str, str] | None = None) -> str:
    """The demo tenant, its key, template and contact, and (given its URL and secret) a webhook
    endpoint receiving every status change."""
    tenant = DEMO["tenant"]["id"]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin_token}"}) as http:
        async with http.post(f"{base}/admin/v1/tenants", json=DEMO["tenant"]) as resp:
            if resp.status not in (201, 409):
                raise RuntimeError(f"could not create the demo tenant: {resp.status} {await resp.text()}")
        async with http.post(f"{base}/admin/v1/tenants/{tenant}/api-keys", json={"name": "demo"}) as resp:
            api_key = str((await resp.json())["api_key"])
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {api_key}"}) as http:
        async with http.put(f"{base}/v1/templates/{DEMO['template_id']}", json=DEMO["template"]) as resp:
            resp.raise_for_status()
        async with http.put(f"{base}/v1/contacts/{DEMO['contact_id']}", json=DEMO["contact"]) as resp:
            resp.raise_for_status()
        for template_id, template in DEMO["templates"].items():
            async with http.put(f"{base}/v1/templates/{template_id}", json=template) as resp:
                resp.raise_for_status()
        for event_type, trigger in DEMO["triggers"].items():
            async with http.put(f"{base}/v1/triggers/{event_type}", json=trigger) as resp:
                resp.raise_for_status()
        if webhook is not None:
            url, secret = webhook
            endpoint = {"url": url, "secret": secret, "event_types": ["notification.status"]}
            async with http.put(f"{base}/v1/webhooks/demo", json=endpoint) as resp:
                resp.raise_for_status()
    return api_key


def event_curl(base: str, api_key: str) -> str:
    """A curl posting the demo booking event: its trigger emails (and pushes) the demo contact."""
    event = {**DEMO["event"], "occurred_at": "2026-01-01T19:30:00+00:00"}
    return (
        f"  curl -sS -X POST {base}/v1/events \\\n"
        f"    -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' \\\n"
        f"    -d '{json.dumps(event, ensure_ascii=False)}'"
    )


def campaign_curl(base: str, api_key: str) -> str:
    """Shell lines that create a small campaign, upload its audience (the demo contact) and start it."""
    auth = f"-H 'Authorization: Bearer {api_key}'"
    create = '{"name": "Points this month", "template_id": "monthly-points", "rate_per_s": 10}'
    line = json.dumps({"contact_id": DEMO["contact_id"]})
    return (
        f"  C=$(curl -sS -X POST {base}/v1/campaigns {auth} -H 'Content-Type: application/json' \\\n"
        f"    -d '{create}' | sed -E 's/.*\"id\":\"(c_[0-9a-f]+)\".*/\\1/')\n"
        f"  echo '{line}' | curl -sS -X POST {base}/v1/campaigns/$C/audience {auth} \\\n"
        "    -H 'Content-Type: application/x-ndjson' --data-binary @-\n"
        f"  curl -sS -X POST {base}/v1/campaigns/$C:start {auth}\n"
        f"  {herald_command()} campaigns watch $C --url {base} --api-key {api_key}"
    )


def herald_command() -> str:
    """The ``herald`` beside this interpreter (``.venv/bin/herald`` after ``make run``), as a newcomer's
    shell can run it without activating the virtualenv."""
    exe = Path(sys.executable).parent / "herald"
    if not exe.exists():
        return "herald"
    relative = os.path.relpath(exe)
    return relative if not relative.startswith("..") else str(exe)


def banner(
    base: str, outbox_url: str, api_key: str, admin_token: str, channels: Sequence[str] = tuple(CHANNELS)
) -> str:
    def body(names: Sequence[str]) -> str:
        listed = ", ".join(f'"{name}"' for name in names)
        return (
            f'{{"to": {{"contact_id": "{DEMO["contact_id"]}"}}, "template_id": "{DEMO["template_id"]}", '
            f'"channels": [{listed}], '
            '"data": {"film": "Dune: Part Two", "screen": 4, "seat": "F7"}}'
        )

    def curl(names: Sequence[str]) -> str:
        return (
            f"  curl -sS -X POST {base}/v1/notifications \\\n"
            f"    -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' \\\n"
            f"    -d '{body(names)}'"
        )

    return f"""
Herald is running.
  API            {base}   (OpenAPI: {base}/v1/openapi.json)
  outbox         {outbox_url}   (captured email, SMS, push and verified webhooks, newest first)
  admin token    {admin_token}
  demo API key   {api_key}

Send a first message ({channels[0]}):

{curl(channels[:1])}

Send the same booking to every channel that is on ({", ".join(channels)}) of the demo contact:

{curl(channels)}

then follow it with GET {base}/v1/notifications/<id> (same header) and open the outbox.

Or post a loyalty event: the booking.confirmed trigger sends the booking by email and push
(points.earned sends only when data.points >= 100):

{event_curl(base, api_key)}

and GET {base}/v1/events/<id> shows what each trigger rule decided.

Run a small campaign (create it, upload its audience, start it, watch its progress; the email shows
up in the outbox):

{campaign_curl(base, api_key)}

Ctrl-C stops everything.
"""


async def run(args: argparse.Namespace, root: Path) -> None:
    stack = DevStack(root, seed=not args.no_seed)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stack.stopping.set)
    say("herald dev: starting")
    outbox_runner: web.AppRunner | None = None
    try:
        await asyncio.to_thread(stack.start_infra)
        env = stack.env
        created = await create_topics(
            env["HERALD_KAFKA_BOOTSTRAP"],
            Topics(env.get("HERALD_KAFKA_TOPIC_PREFIX", "herald")).all(),
            int(env.get("HERALD_DEV_PARTITIONS", "12")),
        )
        say(f"  topics created: {len(created)}")
        outbox_port = int(env.get("HERALD_DEV_OUTBOX_PORT", "8025"))
        outbox_runner = web.AppRunner(outbox_app(Outbox(root / "outbox")), access_log=None)
        await outbox_runner.setup()
        await web.TCPSite(outbox_runner, "127.0.0.1", outbox_port).start()
        http_host, http_port = (
            env.get("HERALD_HTTP_HOST", "127.0.0.1"),
            int(env.get("HERALD_HTTP_PORT", "8080")),
        )
        if port_open(http_host, http_port):
            raise SystemExit(f"port {http_port} is in use: set HERALD_HTTP_PORT to a free port")
        base = f"http://{http_host}:{http_port}"
        await stack.start_peers(base)
        stack.start_services()
        await wait_http_ok(f"{base}/readyz")
        hook = stack.peers.webhook_url
        webhook = (hook, stack.peers.webhook_secret) if hook else None
        api_key = await seed_demo(base, env["HERALD_ADMIN_TOKEN"], webhook) if stack.seed else "(not seeded)"
        outbox_url = f"http://127.0.0.1:{outbox_port}/"
        text = banner(base, outbox_url, api_key, env["HERALD_ADMIN_TOKEN"], stack.channels)
        (root / "demo.txt").write_text(text)
        say(text)
        await stack.supervise()
    finally:
        say("herald dev: stopping")
        stack.stopping.set()
        await stack.stop()
        if outbox_runner is not None:
            await outbox_runner.cleanup()
        say("herald dev: stopped")


def main(args: argparse.Namespace) -> None:
    root = Path(args.dir).resolve()
    (root / "logs").mkdir(parents=True, exist_ok=True)
    asyncio.run(run(args, root))
