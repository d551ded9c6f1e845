"""The reference for per-message channels: one bare asyncio process that renders each message from a
sandboxed template and POSTs it straight to the provider peer, as many at once as ``--concurrency``.

    python -m bench.reference sms  --url URL --sid SID --token TOKEN --n 3000
    python -m bench.reference push --url URL --token-url URL --credentials FILE --project P --n 3000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time

import aiohttp
import jwt
import orjson
from jinja2.sandbox import ImmutableSandboxedEnvironment

ENV = ImmutableSandboxedEnvironment()
SMS = ENV.from_string("{{ contact.first_name }}, your booking code is n={{ data.n }}")
PUSH = ENV.from_string("Seat F7 is yours n={{ data.n }}")


async def sms(args: argparse.Namespace, http: aiohttp.ClientSession, i: int) -> None:
    form = {
        "To": f"+4479111{i:05d}",
        "From": "+14155550100",
        "Body": SMS.render(contact={"first_name": "Alex"}, data={"n": i}),
    }
    url = f"{args.url}/2010-04-01/Accounts/{args.sid}/Messages.json"
    async with http.post(url, data=form, headers={"Authorization": args.basic}) as resp:
        await resp.read()


async def access_token(args: argparse.Namespace, http: aiohttp.ClientSession) -> str:
    account = orjson.loads(open(args.credentials, "rb").read())  # noqa: ASYNC230 -- once, at start
    now = int(time.time())
    assertion = jwt.encode(
        {
            "iss": account["client_email"],
            "scope": "https://www.googleapis.com/auth/firebase.messaging",
            "aud": args.token_url,
            "iat": now,
            "exp": now + 3600,
        },
        account["private_key"],
        "RS256",
    )
    async with http.post(
        args.token_url,
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
    ) as resp:
        return str((await resp.json())["access_token"])


async def push(args: argparse.Namespace, http: aiohttp.ClientSession, i: int, token: str) -> None:
    body = {
        "message": {
            "token": f"bench-token-{i:08d}",
            "notification": {"title": "Booked", "body": PUSH.render(data={"n": i})},
        }
    }
    async with http.post(
        f"{args.url}/v1/projects/{args.project}/messages:send",
        data=orjson.dumps(body),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    ) as resp:
        await resp.read()


async def run(args: argparse.Namespace) -> None:
    cpu_started = time.process_time()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(args.n):
        queue.put_nowait(i)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        token = await access_token(args, http) if args.kind == "push" else ""

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                if args.kind == "sms":
                    await sms(args, http, i)
                else:
                    await push(args, http, i, token)

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    print(f"cpu_s {time.process_time() - cpu_started:.4f}")  # the sending's CPU, start-up left out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["sms", "push"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--sid", default="")
    parser.add_argument("--token", default="")
    parser.add_argument("--token-url", default="")
    parser.add_argument("--credentials", default="")
    parser.add_argument("--project", default="")
    args = parser.parse_args()
    args.basic = "Basic " + base64.b64encode(f"{args.sid}:{args.token}".encode()).decode()
    try:
        import uvloop

        uvloop.run(run(args))
    except ImportError:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
