"""POST /v1/campaigns/{id}/audience: the audience streamed in, NDJSON (``application/x-ndjson``) or CSV
(``text/csv``), appended to a draft campaign's audience (deduplicated).

The body is read a line at a time and written in batches (constant memory, whatever its length); it
is exempt from the whole-body deadline, but each line must arrive within ``HERALD_HTTP_BODY_TIMEOUT_S``
of the previous one. A bad line is counted and reported (the first :data:`MAX_REPORTED` with their line
numbers) and the rest goes on. Inline contact fields are merged into the stored contacts as events'
are. The answer says how many lines were read, how many ids were new to the audience, and the errors.
"""

from __future__ import annotations

from aiohttp import web

from herald_common.campaigns.audience import MAX_LINE_BYTES, CsvReader, LineError, Member, parse_ndjson
from herald_gateway.campaigns import CAMPAIGNS, _load
from herald_gateway.context import SETTINGS, TENANT_ID
from herald_gateway.events import TRIGGERS
from herald_gateway.problems import ProblemError, json_response
from herald_gateway.streaming import body_lines, streams_body

BATCH = 2000
MAX_REPORTED = 100
NDJSON = frozenset(
    {"application/x-ndjson", "application/jsonl", "application/json-seq", "application/ndjson"}
)


@streams_body  # read line by line, exempt from the whole-body read
async def upload(request: web.Request) -> web.Response:
    app, tenant_id = request.app, request[TENANT_ID]
    snap = await _load(request)
    if snap.state != "draft":
        raise ProblemError(409, f"the campaign is {snap.state}; the audience is fixed once it starts")
    ctype = request.content_type
    if ctype not in NDJSON and ctype != "text/csv":
        raise ProblemError(415, "send the audience as application/x-ndjson or text/csv")
    campaign_id = snap.campaign.id
    timeout = app[SETTINGS].http_body_timeout_s
    csv_reader: CsvReader | None = None
    lines = added = 0
    errors: list[dict[str, object]] = []
    error_count = 0
    batch: list[Member] = []

    async def flush() -> None:
        nonlocal added
        if not batch:
            return
        inline = [(m.contact_id, m.contact) for m in batch if m.contact is not None]
        if inline:
            await app[TRIGGERS].upsert_contacts(tenant_id, inline)
        new = await app[CAMPAIGNS].append_audience(tenant_id, campaign_id, [m.contact_id for m in batch])
        if new < 0:
            raise ProblemError(
                409, f"the campaign started during the upload; {added} ids were added before it"
            )
        added += new
        batch.clear()

    try:
        async for raw in body_lines(request, max_line=MAX_LINE_BYTES, timeout_s=timeout):
            if raw is None:
                raise ProblemError(413, f"a line is longer than {MAX_LINE_BYTES} bytes")
            lines += 1
            text = raw.strip()
            if not text:
                continue
            try:
                if ctype == "text/csv":
                    decoded = text.decode("utf-8")
                    if csv_reader is None:
                        csv_reader = CsvReader(decoded)
                        continue
                    member = csv_reader.parse(decoded)
                else:
                    member = parse_ndjson(text)
            except (LineError, UnicodeDecodeError) as exc:
                if ctype == "text/csv" and csv_reader is None:
                    raise ProblemError(422, f"line 1 (the header): {exc}") from None
                error_count += 1
                if len(errors) < MAX_REPORTED:
                    errors.append({"line": lines, "message": str(exc)})
                continue
            batch.append(member)
            if len(batch) >= BATCH:
                await flush()
    except TimeoutError:
        response = json_response({"detail": "the upload stalled", "lines": lines, "added": added}, status=408)
        response.force_close()
        return response
    await flush()
    total = int((await _load(request)).number("audience"))
    body = {"lines": lines, "added": added, "audience": total, "error_count": error_count, "errors": errors}
    return json_response(body)
