"""Per-platform override blocks of a push message, as FCM HTTP v1 names them.

A template's (or an inline notification's) push content may carry ``android``, ``apns``, ``webpush``
and ``fcm_options`` beside its title, body and data. Each block is validated here the way FCM's
``projects.messages`` resource defines it (snake_case field names, the enums and formats FCM checks;
an unknown name is refused with its path, 422, instead of failing every send with FCM's 400), bounded
to :data:`MAX_BLOCK_BYTES` of JSON each, and carried to the FCM request unchanged. The blocks are not
templates: ``{{ … }}`` in them is sent as written.

Free-form parts stay free-form where FCM leaves them so: ``apns.payload`` (the APNs payload, ``aps``
and custom keys) and ``webpush.notification`` (Web Notification options) are JSON objects; ``data``
and ``headers`` maps carry strings only, as FCM requires.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)

from herald_common.fields import JsonObject

MAX_BLOCK_BYTES = 4096  # FCM's own limit on a message's payload
MAX_MAP_ENTRIES = 100

# Durations as FCM takes them (google.protobuf.Duration in JSON): seconds with up to nine decimals.
Duration = Annotated[str, StringConstraints(pattern=r"^\d{1,10}(\.\d{1,9})?s$")]
AnalyticsLabel = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9\-_.~%]{1,50}$")]
Text = Annotated[str, StringConstraints(max_length=1000)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
StringMap = Annotated[
    dict[Name, Annotated[str, StringConstraints(max_length=MAX_BLOCK_BYTES)]],
    Field(max_length=MAX_MAP_ENTRIES),
]
Args = Annotated[list[Text], Field(max_length=20)]


class _Fcm(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_serializer(mode="wrap")
    def _given_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """What the tenant gave, no null for each field it left out (as stored, shown and sent)."""
        return {k: v for k, v in handler(self).items() if v is not None}


class _Bounded(_Fcm):
    @model_validator(mode="after")
    def _size(self) -> Any:
        size = len(orjson.dumps(self.model_dump(mode="json", exclude_none=True)))
        if size > MAX_BLOCK_BYTES:
            raise ValueError(f"is {size} bytes of JSON; at most {MAX_BLOCK_BYTES}")
        return self


class Color(_Fcm):
    red: float = Field(ge=0, le=1)
    green: float = Field(ge=0, le=1)
    blue: float = Field(ge=0, le=1)
    alpha: float | None = Field(None, ge=0, le=1)


class LightSettings(_Fcm):
    color: Color
    light_on_duration: Duration
    light_off_duration: Duration


class AndroidNotification(_Fcm):
    title: Text | None = None
    body: Annotated[str, StringConstraints(max_length=4000)] | None = None
    icon: Name | None = None
    color: Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")] | None = None
    sound: Name | None = None
    tag: Name | None = None
    click_action: Name | None = None
    body_loc_key: Name | None = None
    body_loc_args: Args | None = None
    title_loc_key: Name | None = None
    title_loc_args: Args | None = None
    channel_id: Name | None = None
    ticker: Text | None = None
    sticky: bool | None = None
    event_time: Annotated[str, StringConstraints(max_length=40)] | None = None
    local_only: bool | None = None
    notification_priority: (
        Literal[
            "PRIORITY_UNSPECIFIED",
            "PRIORITY_MIN",
            "PRIORITY_LOW",
            "PRIORITY_DEFAULT",
            "PRIORITY_HIGH",
            "PRIORITY_MAX",
        ]
        | None
    ) = None
    default_sound: bool | None = None
    default_vibrate_timings: bool | None = None
    default_light_settings: bool | None = None
    vibrate_timings: Annotated[list[Duration], Field(max_length=50)] | None = None
    visibility: Literal["VISIBILITY_UNSPECIFIED", "PRIVATE", "PUBLIC", "SECRET"] | None = None
    notification_count: int | None = Field(None, ge=0, le=2**31 - 1)
    light_settings: LightSettings | None = None
    image: Annotated[str, StringConstraints(max_length=2000)] | None = None


class AndroidFcmOptions(_Fcm):
    analytics_label: AnalyticsLabel | None = None


class AndroidConfig(_Bounded):
    """FCM v1 ``message.android``."""

    collapse_key: Name | None = None
    priority: Literal["NORMAL", "HIGH"] | None = None
    ttl: Duration | None = None
    restricted_package_name: Name | None = None
    data: StringMap | None = None
    notification: AndroidNotification | None = None
    fcm_options: AndroidFcmOptions | None = None
    direct_boot_ok: bool | None = None


class ApnsFcmOptions(_Fcm):
    analytics_label: AnalyticsLabel | None = None
    image: Annotated[str, StringConstraints(max_length=2000)] | None = None


class ApnsConfig(_Bounded):
    """FCM v1 ``message.apns``: APNs request headers and the APNs payload as Apple defines it."""

    headers: StringMap | None = None
    payload: JsonObject | None = None
    fcm_options: ApnsFcmOptions | None = None


class WebpushFcmOptions(_Fcm):
    link: Annotated[str, StringConstraints(pattern=r"^https://", max_length=2000)] | None = None
    analytics_label: AnalyticsLabel | None = None


class WebpushConfig(_Bounded):
    """FCM v1 ``message.webpush``: Web Push headers, data, and Web Notification options."""

    headers: StringMap | None = None
    data: StringMap | None = None
    notification: JsonObject | None = None
    fcm_options: WebpushFcmOptions | None = None


class FcmOptions(_Bounded):
    """FCM v1 ``message.fcm_options`` (every platform)."""

    analytics_label: AnalyticsLabel | None = None


# The push content fields that are override blocks: copied to the provider as given.
OVERRIDE_FIELDS = ("android", "apns", "webpush", "fcm_options")

__all__ = ["OVERRIDE_FIELDS", "AndroidConfig", "ApnsConfig", "FcmOptions", "WebpushConfig"]
