"""Schemathesis fuzzes the gateway from its own OpenAPI document, on the real broker and Redis.

Three properties over every tenant and admin operation, with a fixed seed and a bounded number of
examples per operation: no 5xx (``not_a_server_error``), every schema-violating request refused
(``negative_data_rejection``), and every schema-valid request accepted or refused only for a reason the
document cannot state, such as a missing resource (``positive_data_acceptance``). Receipts are left
out: providers authenticate them by signature, not by the bearer tokens the fuzzer sends. The
"coverage" phase is not run: it reports bodies that break the document (a missing required ``to``) as
schema-valid when the schema combines ``required`` with ``anyOf``/``not``, so it cannot judge
positive-data acceptance here; the examples and fuzzing phases generate from the whole schema.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from herald_common.settings import load
from herald_dev.infra import free_port
from herald_gateway.main import serve as serve_gateway
from herald_gateway.settings import GatewaySettings
from tests.conftest import Infra, unique
from tests.harness import ADMIN_TOKEN, Api, Env, running
from tests.slow.fuzz_hooks import FUZZ_TEMPLATE, FUZZ_WEBHOOK_HOST

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.asyncio(loop_scope="module")]

ROOT = Path(__file__).resolve().parents[2]
SEED = 20261130
MAX_EXAMPLES = 40
CHECKS = "not_a_server_error,negative_data_rejection,positive_data_acceptance"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(infra: Infra) -> AsyncIterator[tuple[str, str]]:
    env = Env(infra.bootstrap, infra.redis_url, unique("fuzz"))
    await env.create_topics(partitions=2)
    port = free_port()
    settings = load(
        GatewaySettings,
        **env.settings(http_port=port, admin_token=ADMIN_TOKEN, webhook_allow_hosts=FUZZ_WEBHOOK_HOST),
    )
    async with running((serve_gateway, settings)), aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{port}"
        api = Api(http, base)
        api.token = key = await api.new_tenant("Fuzzed Cinemas")
        template = {
            "category": "marketing",
            "email": {"subject": "Hi", "text": "Hello {{ contact.first_name }}"},
        }
        assert (await api.call("PUT", f"/v1/templates/{FUZZ_TEMPLATE}", template))[0] == 200
        yield base, key


async def _schemathesis(base: str, token: str, paths: str, report: Path, doc: str) -> tuple[int, str]:
    st = Path(sys.executable).with_name("st")
    proc = await asyncio.create_subprocess_exec(
        str(st),
        "run",
        f"{base}{doc}",
        "--header",
        f"Authorization: Bearer {token}",
        "--include-path-regex",
        paths,
        "--exclude-path-regex",
        "^/v1/receipts/",
        "--checks",
        CHECKS,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--phases",
        "examples,fuzzing",
        "--workers",
        "2",
        "--no-color",
        "--generation-database",
        "none",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.slow.fuzz_hooks", "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


@pytest.mark.parametrize("who,paths", [("tenant", "^/v1/"), ("admin", "^/admin/v1/")])
async def test_fuzzing_finds_no_server_error_and_no_schema_disagreement(
    gateway: tuple[str, str], who: str, paths: str, tmp_path: Path
) -> None:
    base, key = gateway
    code, output = await _schemathesis(
        base,
        key if who == "tenant" else ADMIN_TOKEN,
        paths,
        tmp_path / "j.xml",
        "/v1/openapi.json" if who == "tenant" else "/admin/v1/openapi.json",
    )
    summary = output[output.rfind("SUMMARY") :] if "SUMMARY" in output else output[-3000:]
    assert code == 0, output[-12000:]
    assert "Tested:" in summary, summary
