"""Sandboxed, budgeted rendering of per-channel content, and the one template context.

Templates see ``contact``, ``data`` and ``tenant`` and nothing else (no Jinja globals); attribute
access to Python internals raises a SecurityError and printing a function, class or other Python
object is an error, not its repr. HTML bodies are autoescaped; subjects, texts, SMS and push are not.
Which fields of a channel are templates comes from :data:`herald_common.channels.CHANNELS`.

Every source and render is budgeted (:mod:`herald_common.template_budget`): a source is at most its
content model's ``max_length`` (:data:`MAX_MAPPING_SOURCE_CHARS` for push ``data`` values) and a bounded
number of tokens and nodes; a render at most a number of steps and milliseconds of CPU; a rendered
field at most the same length as its source limit, checked while the output streams. Going over is a
:class:`TemplateBudgetError`, a :class:`TemplateRenderError` like any other render failure.

:func:`render_channel_async` keeps the event loop responsive: a channel whose templates are compiled
starts rendering inline under a small slice of the budget; a render that needs more than the slice (or
a compile) runs in a worker thread under the full budget.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar, cast

from jinja2 import Template, TemplateError
from pydantic import TypeAdapter

from herald_common.channels import CHANNELS, TemplateField
from herald_common.schemas import ChannelContent, Contact, ContactIn, Tenant
from herald_common.substitution import NOT_SUBSTITUTABLE, FieldSkeleton, Part, Skeleton, compile_skeleton
from herald_common.template_budget import Budget, BudgetExceeded, SliceExhausted, budgeted
from herald_common.template_sandbox import BudgetedEnvironment

MAX_MAPPING_SOURCE_CHARS = 4_096  # one push ``data`` value (FCM allows 4 KB of data in all)
CACHE_BYTES = 48 * 2**20  # estimated memory of all compiled templates kept in a process
SKELETON_CACHE_BYTES = 16 * 2**20  # compiled skeletons (see herald_common.substitution)
CACHE_ENTRY_BYTES = 4 * 2**20  # a compiled template estimated above this is not kept
INLINE_STEPS = 5_000  # the slice a cached template may use on the event loop before moving off it
INLINE_CPU_S = 0.005
K = TypeVar("K")
V = TypeVar("V")
R = TypeVar("R")


class TemplateRenderError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class TemplateBudgetError(TemplateRenderError):
    """A template went over its compile or render budget."""


_ENVS = {False: BudgetedEnvironment(autoescape=False), True: BudgetedEnvironment(autoescape=True)}


def _max_chars(channel: str, spec: TemplateField) -> int:
    if spec.mapping:
        return MAX_MAPPING_SOURCE_CHARS
    # The field's own schema (the model's would need the OpenAPI document's shared components).
    field = CHANNELS[channel].content_model.model_fields[spec.name]
    prop = TypeAdapter[Any](cast(Any, Annotated[cast(Any, field.annotation), field])).json_schema()
    for schema in [prop, *prop.get("anyOf", [])]:
        if "maxLength" in schema:
            return int(schema["maxLength"])
    raise AssertionError(f"{channel}.{spec.name} has no max_length")  # pragma: no cover


# (channel, field name) -> the longest source and rendered output of that field
LIMITS: dict[tuple[str, str], int] = {
    (channel, f.name): _max_chars(channel, f)
    for channel, spec in CHANNELS.items()
    for f in spec.template_fields
}


# --- compiled templates, bounded by estimated bytes ----------------------------------------------------
class BoundedCache(Generic[K, V]):
    """Least recently used entries, bounded by their estimated bytes (compiled templates, and the
    router's rendered skeletons)."""

    def __init__(self, budget_bytes: int, entry_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.entry_bytes = entry_bytes
        self.used = 0
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def cost(source: str) -> int:
        """Compiled size grows with the source and much faster with its tags (measured ~2 B per
        character of plain text, a few hundred bytes per tag)."""
        return 16_384 + 2 * len(source) + 512 * (source.count("{{") + source.count("{%"))

    def get(self, key: K) -> V | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            self._entries.move_to_end(key)
            return hit[0]

    def put(self, key: K, value: V, cost: int | None = None) -> None:
        """Keep ``value`` (its cost: given, else a compiled template's estimate from ``key[0]``)."""
        if cost is None:
            cost = self.cost(key[0])  # type: ignore[index]
        if cost > self.entry_bytes:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = (value, cost)
            self.used += cost
            while self.used > self.budget_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.used -= dropped

    def __contains__(self, key: K) -> bool:
        return key in self._entries

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.used = 0


COMPILED: BoundedCache[tuple[str, bool], Template] = BoundedCache(CACHE_BYTES, CACHE_ENTRY_BYTES)
SKELETONS: BoundedCache[tuple[str, bool], FieldSkeleton] = BoundedCache(
    SKELETON_CACHE_BYTES, CACHE_ENTRY_BYTES
)


def _compile(source: str, html: bool, field: str, limit: int) -> Template:
    if len(source) > limit:
        raise TemplateBudgetError(field, f"the template is longer than {limit} characters")
    key = (source, html)
    template = COMPILED.get(key)
    if template is None:
        try:
            template = _ENVS[html].from_string(source)
        except BudgetExceeded as exc:
            raise TemplateBudgetError(field, str(exc)) from None
        except TemplateError as exc:
            raise TemplateRenderError(field, f"template syntax error: {exc}") from None
        except (RecursionError, MemoryError) as exc:
            raise TemplateBudgetError(field, f"the template is too complex ({type(exc).__name__})") from None
        COMPILED.put(key, template)
    return template


def _sources(content: ChannelContent, channel: str) -> list[tuple[str, str, bool, int]]:
    """(field path, source, html, limit) of every template in one channel's content."""
    part = getattr(content, channel)
    if part is None:
        raise TemplateRenderError(channel, f"no {channel} content")
    out = []
    for spec in CHANNELS[channel].template_fields:
        value = getattr(part, spec.name, None)
        limit = LIMITS[(channel, spec.name)]
        if spec.mapping:
            out += [(f"{channel}.{spec.name}.{k}", v, spec.html, limit) for k, v in (value or {}).items()]
        elif value:
            out.append((f"{channel}.{spec.name}", value, spec.html, limit))
    return out


def check_syntax(content: ChannelContent, prefix: str = "") -> list[tuple[str, str]]:
    """Return (field path, message) for every field that does not compile within its budget.
    Compiling can take a while for a large source: call it off the event loop."""
    problems = []
    for channel in content.channels():
        for field, source, html, limit in _sources(content, channel):
            try:
                _compile(source, html, field, limit)
            except TemplateRenderError as exc:
                problems.append((f"{prefix}{field}", exc.message))
    return problems


def check_template(content: ChannelContent, prefix: str = "") -> list[tuple[str, str]]:
    """:func:`check_syntax`, then a trial render of each channel with an empty context: a template that
    goes over its budget even without data (``{{ 'a' * 10**8 }}``) is refused up front. Other render
    errors are left to the send, where the data they depend on is given. Call it off the event loop."""
    problems = check_syntax(content, prefix)
    for channel in [] if problems else content.channels():
        try:
            render_channel(content, channel, {"contact": {}, "data": {}, "tenant": {}})
        except TemplateBudgetError as exc:
            problems.append((f"{prefix}{exc.field}", exc.message))
        except TemplateRenderError:
            pass
    return problems


def _render_one(template: Template, context: dict[str, Any], field: str, limit: int) -> str:
    chunks: list[str] = []
    total = 0
    try:
        for chunk in template.root_render_func(template.new_context(context)):  # generate() minus its wrapper
            total += len(chunk)
            if total > limit:
                raise TemplateBudgetError(field, f"the rendered text is longer than {limit} characters")
            chunks.append(chunk)
    except SliceExhausted:
        raise
    except BudgetExceeded as exc:
        raise TemplateBudgetError(field, str(exc)) from None
    except TemplateError as exc:  # SecurityError, UndefinedError, syntax errors
        raise TemplateRenderError(field, str(exc)) from None
    except (TypeError, ValueError, ArithmeticError, LookupError, RecursionError) as exc:
        if isinstance(exc, TemplateRenderError):
            raise
        raise TemplateRenderError(field, f"{type(exc).__name__}: {exc}") from None
    except MemoryError:
        raise TemplateBudgetError(field, "the template ran out of memory") from None
    return "".join(chunks)


def render_channel(
    content: ChannelContent, channel: str, context: dict[str, Any], budget: Budget | None = None
) -> dict[str, Any]:
    """Render one channel's fields under one budget; returns a plain dict (subject/html/text, text,
    title/body/data). Runs on the calling thread: prefer :func:`render_channel_async` on a loop."""
    rendered: dict[str, Any] = {}
    with budgeted(budget or Budget()):
        for field, source, html, limit in _sources(content, channel):
            text = _render_one(_compile(source, html, field, limit), context, field, limit)
            _, name, *key = field.split(".", 2)
            if key:
                rendered.setdefault(name, {})[key[0]] = text
            else:
                rendered[name] = text
    for spec in CHANNELS[channel].template_fields:
        if spec.mapping:
            rendered.setdefault(spec.name, {})
    part = getattr(content, channel)
    for name in CHANNELS[channel].passthrough_fields:
        if (value := getattr(part, name, None)) is not None:
            rendered[name] = value.model_dump(mode="json", exclude_none=True)
    return rendered


async def render_channel_async(
    content: ChannelContent, channel: str, context: dict[str, Any]
) -> dict[str, Any]:
    """:func:`render_channel` without holding the event loop for more than a small slice."""
    return await _sliced(render_channel, COMPILED, content, channel, context)


async def _sliced(
    render: Callable[..., R],
    compiled: BoundedCache[tuple[str, bool], Any],
    content: ChannelContent,
    channel: str,
    context: dict[str, Any],
) -> R:
    """``render`` inline under a small slice when every template is ``compiled``; else, or past the
    slice, in a worker thread under the full budget."""
    if all((source, html) in compiled for _, source, html, _ in _sources(content, channel)):
        try:
            return render(content, channel, context, Budget(INLINE_STEPS, INLINE_CPU_S, is_slice=True))
        except SliceExhausted:
            pass
    return await asyncio.to_thread(render, content, channel, context)


def _skeleton(source: str, html: bool, field: str, limit: int) -> FieldSkeleton:
    if len(source) > limit:
        return NOT_SUBSTITUTABLE
    key = (source, html)
    skeleton = SKELETONS.get(key)
    if skeleton is None:
        skeleton = compile_skeleton(_ENVS[html], source, field.rsplit(".", 1)[-1])
        SKELETONS.put(key, skeleton, 2 * SKELETONS.cost(source))  # two compiled templates
    return skeleton


def render_skeleton(
    content: ChannelContent, channel: str, context: dict[str, Any], budget: Budget | None = None
) -> Skeleton | None:
    """One channel's skeleton (see :mod:`herald_common.substitution`) rendered under one budget from a
    context whose ``contact`` the skeleton does not read; None when a field is not substitutable.
    Render errors raise as in :func:`render_channel`. Channels with mapping fields are never substitutable."""
    if any(f.mapping for f in CHANNELS[channel].template_fields):
        return None
    rendered: dict[str, Any] = {}
    parts = []
    with budgeted(budget or Budget()):
        for field, source, html, limit in _sources(content, channel):
            skeleton = _skeleton(source, html, field, limit)
            if skeleton.template is None:
                return None
            name = field.rsplit(".", 1)[-1]
            render = functools.partial(_render_one, context=context, field=field, limit=limit)
            if (result := skeleton.render(render, name)) is None:
                return None
            rendered[name], counts = result
            parts.append(Part(name, html, skeleton.chains, counts, len(rendered[name]), limit))
    return Skeleton(rendered, tuple(parts), _ENVS[False])  # both environments look up alike


async def render_skeleton_async(
    content: ChannelContent, channel: str, context: dict[str, Any]
) -> Skeleton | None:
    """:func:`render_skeleton` without holding the event loop for more than a small slice."""
    return await _sliced(render_skeleton, SKELETONS, content, channel, context)


def template_context(
    *,
    tenant_id: str,
    tenant: Tenant | None,
    data: dict[str, Any],
    contact: Contact | ContactIn | None,
    to: Any = None,
) -> dict[str, Any]:
    """What every template sees, at send and at preview: ``contact`` (its attributes at top level
    too), ``data`` and ``tenant`` (id and name). Without a contact, the request's inline addresses."""
    if contact is not None:
        contact_ctx: dict[str, Any] = {
            **contact.attributes,
            "id": getattr(contact, "id", None),
            "email": contact.email,
            "phone": contact.phone,
            "locale": contact.locale,
            "timezone": contact.timezone,
            "attributes": contact.attributes,
        }
    else:
        contact_ctx = {
            "email": getattr(to, "email", None),
            "phone": getattr(to, "phone", None),
            "attributes": {},
        }
    tenant_ctx = {"id": tenant.id, "name": tenant.name} if tenant else {"id": tenant_id}
    return {"contact": contact_ctx, "data": data, "tenant": tenant_ctx}
