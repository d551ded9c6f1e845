"""Audience uploads, one line at a time: NDJSON (``{"contact_id": "…", "contact": {…}}``, or a bare JSON
string id) or CSV (a header naming ``contact_id`` and, optionally, contact fields: ``email``, ``phone``,
``locale``, ``timezone``, and ``attributes.<name>`` columns). A line that cannot be read is reported with
its number and counted; it never rejects the upload."""

from __future__ import annotations

import csv
from dataclasses import dataclass

import orjson
import pydantic

from herald_common.fields import Identifier
from herald_common.schemas import ContactIn, Strict

MAX_LINE_BYTES = 64 * 1024
_CONTACT_FIELDS = frozenset({"email", "phone", "locale", "timezone"})


class AudienceLine(Strict):
    contact_id: Identifier
    contact: ContactIn | None = None


class LineError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Member:
    contact_id: str
    contact: ContactIn | None = None


_ID = pydantic.TypeAdapter(Identifier)


def _problem(exc: pydantic.ValidationError) -> str:
    err = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else err["msg"]


def parse_ndjson(line: bytes) -> Member:
    if not line.lstrip().startswith(b"{"):
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise LineError(f"not JSON: {exc}") from None
        if not isinstance(raw, str):
            raise LineError("give an object with contact_id, or the id as a JSON string")
        try:
            return Member(_ID.validate_python(raw, strict=True))
        except pydantic.ValidationError as exc:
            raise LineError(f"contact_id: {_problem(exc)}") from None
    try:
        parsed = AudienceLine.model_validate_json(line)
    except pydantic.ValidationError as exc:
        raise LineError(_problem(exc)) from None
    return Member(parsed.contact_id, parsed.contact)


class CsvReader:
    """Reads the header from the first line, then one member per line."""

    def __init__(self, header: str) -> None:
        names = next(csv.reader([header]))
        names = [n.strip() for n in names]
        if "contact_id" not in names:
            raise LineError("the CSV header needs a contact_id column")
        unknown = [
            n
            for n in names
            if n != "contact_id" and n not in _CONTACT_FIELDS and not n.startswith("attributes.")
        ]
        if unknown:
            raise LineError(f"unknown CSV column {unknown[0]!r}")
        self.names = names

    def parse(self, line: str) -> Member:
        try:
            values = next(csv.reader([line]))
        except csv.Error as exc:
            raise LineError(f"not CSV: {exc}") from None
        if len(values) != len(self.names):
            raise LineError(f"{len(values)} fields, the header has {len(self.names)}")
        row = dict(zip(self.names, values, strict=True))
        try:
            contact_id = _ID.validate_python(row.pop("contact_id"), strict=True)
        except pydantic.ValidationError as exc:
            raise LineError(f"contact_id: {_problem(exc)}") from None
        fields = {k: v for k, v in row.items() if k in _CONTACT_FIELDS and v != ""}
        attributes = {
            k.split(".", 1)[1]: v for k, v in row.items() if k.startswith("attributes.") and v != ""
        }
        if not fields and not attributes:
            return Member(contact_id)
        try:
            contact = ContactIn.model_validate({**fields, "attributes": attributes} if attributes else fields)
        except pydantic.ValidationError as exc:
            raise LineError(_problem(exc)) from None
        return Member(contact_id, contact)
