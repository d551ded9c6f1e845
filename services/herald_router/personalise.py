"""Bulk email rendered once per template, data and tenant, with each member's own substitutions.

On the bulk lane, a channel whose spec allows it (email) is rendered as a skeleton
(:func:`herald_common.templating.render_skeleton`) cached here by its sources, ``data`` and ``tenant``,
and each recipient gets only the skeleton plus ``substitutions`` (``{token: value}``): a campaign's
deliveries then share one content and the SendGrid adapter sends up to 1,000 of them per request.
Whatever the skeleton cannot carry (a template that is not substitutable, a value only the full render
can print, a skeleton that fails to render) is rendered in full per recipient, as on the transactional
lane, which never takes this path.
"""

from __future__ import annotations

from typing import Any

import orjson

from herald_common.channels import spec
from herald_common.schemas import ChannelContent
from herald_common.substitution import CONTENT_FIELD, Skeleton
from herald_common.templating import (
    CACHE_ENTRY_BYTES,
    BoundedCache,
    TemplateRenderError,
    render_channel_async,
    render_skeleton_async,
)

CACHE_BYTES = 32 * 2**20  # estimated memory of all rendered skeletons kept in a router
_Key = tuple[Any, ...]


class Personaliser:
    def __init__(self, budget_bytes: int = CACHE_BYTES) -> None:
        self.skeletons: BoundedCache[_Key, tuple[Skeleton | None]] = BoundedCache(
            budget_bytes, CACHE_ENTRY_BYTES
        )

    async def render(
        self, content: ChannelContent, channel: str, context: dict[str, Any], lane: str
    ) -> dict[str, Any]:
        """The channel's content for this recipient: skeleton plus substitutions where it can be,
        else the full render (which raises TemplateRenderError as it always has)."""
        if lane == "bulk" and spec(channel).substitutions:
            skeleton = await self._skeleton(content, channel, context)
            if skeleton is not None and (subs := skeleton.substitutions(context["contact"])) is not None:
                return {**skeleton.rendered, CONTENT_FIELD: subs} if subs else dict(skeleton.rendered)
        return await render_channel_async(content, channel, context)

    async def _skeleton(
        self, content: ChannelContent, channel: str, context: dict[str, Any]
    ) -> Skeleton | None:
        part = getattr(content, channel)
        if part is None:
            return None
        sources = tuple(getattr(part, f.name, None) for f in spec(channel).template_fields)
        data = orjson.dumps(context["data"])
        tenant = orjson.dumps(context["tenant"])
        key = (channel, sources, data, tenant)
        entry = self.skeletons.get(key)
        if entry is None:
            try:
                skeleton = await render_skeleton_async(content, channel, {**context, "contact": {}})
            except TemplateRenderError:
                skeleton = None
            entry = (skeleton,)
            rendered = skeleton.rendered.values() if skeleton is not None else ()
            size = sum(len(s or "") for s in sources) + len(data) + sum(len(t) for t in rendered)
            self.skeletons.put(key, entry, 4096 + 2 * size)
        return entry[0]
