"""A local FCM HTTP v1 peer with its OAuth2 token endpoint.

``POST /token`` takes ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>``,
verifies the RS256 signature with the public key of a known service account (by ``iss``), the
audience (this endpoint's URL or the account's ``token_uri``), the firebase.messaging scope and a
lifetime of at most an hour, and answers ``{"access_token", "expires_in", "token_type": "Bearer"}``
or ``{"error": "invalid_grant", "error_description"}``.

``POST /v1/projects/{project}/messages:send`` wants ``Authorization: Bearer <issued token>`` and
``{"message": {"token" | "topic" | "condition", "notification", "data": {str: str}, ...}}``; it
answers ``{"name": "projects/<p>/messages/<id>"}`` or Google's error document with FCM details:
404 NOT_FOUND / UNREGISTERED for tokens in ``faults.invalid``, 400 INVALID_ARGUMENT (with a
``message.token`` field violation for a malformed token, or for an ``android``/``apns``/``webpush``/
``fcm_options`` block that is not an object, names a field FCM v1 does not have, or gives a wrong
priority, TTL or string map), 401 UNAUTHENTICATED, 403 for a project the service accounts may not send
in (``project_id`` and ``projects``), 429 RESOURCE_EXHAUSTED / QUOTA_EXCEEDED, 500 INTERNAL,
503 UNAVAILABLE. Each captured message records the project its URL named.

The field names below are FCM's, written here from its reference on their own: the peer checks
what Herald sends, so it does not share Herald's models.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Any

import jwt
import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from herald_dev.outbox import Outbox
from herald_dev.peers.faults import FaultPlan, apply_faults, json_response

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_TOKEN = re.compile(r"^[A-Za-z0-9_:.\-]{8,4096}$")
_RESERVED_DATA = re.compile(r"^(from|notification|message_type|google\..*|gcm\..*)$")
# FCM v1 message blocks: their field names, and which of those are string maps.
_BLOCKS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "android": (
        frozenset(
            {
                "collapse_key",
                "priority",
                "ttl",
                "restricted_package_name",
                "data",
                "notification",
                "fcm_options",
                "direct_boot_ok",
            }
        ),
        frozenset({"data"}),
    ),
    "apns": (frozenset({"headers", "payload", "fcm_options"}), frozenset({"headers"})),
    "webpush": (
        frozenset({"headers", "data", "notification", "fcm_options"}),
        frozenset({"headers", "data"}),
    ),
    "fcm_options": (frozenset({"analytics_label"}), frozenset()),
}
_ANDROID_NOTIFICATION = frozenset(
    {
        "title",
        "body",
        "icon",
        "color",
        "sound",
        "tag",
        "click_action",
        "body_loc_key",
        "body_loc_args",
        "title_loc_key",
        "title_loc_args",
        "channel_id",
        "ticker",
        "sticky",
        "event_time",
        "local_only",
        "notification_priority",
        "default_sound",
        "default_vibrate_timings",
        "default_light_settings",
        "vibrate_timings",
        "visibility",
        "notification_count",
        "light_settings",
        "image",
    }
)
_DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_FCM_CODES = {
    400: "INVALID_ARGUMENT",
    404: "UNREGISTERED",
    429: "QUOTA_EXCEEDED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_MESSAGES = {
    429: "Quota exceeded for quota metric 'Send requests'.",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
}


def google_error(
    status: int,
    message: str,
    *,
    fcm_code: str | None = None,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    details: list[dict[str, Any]] = []
    if fcm_code:
        details.append(
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code}
        )
    if field:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": message}],
            }
        )
    error: dict[str, Any] = {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}
    if details:
        error["details"] = details
    return json_response({"error": error}, status, headers)


def make_test_service_account(
    path: str | Path,
    *,
    project_id: str = "herald-dev",
    client_email: str | None = None,
    token_uri: str | None = None,
) -> dict[str, Any]:
    """Write a service-account JSON key file with a fresh RSA key to ``path``; returns its contents."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    account = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": client_email or f"herald-sender@{project_id}.iam.gserviceaccount.com",
        "client_id": str(secrets.randbelow(10**20)),
        "token_uri": token_uri or "https://oauth2.googleapis.com/token",
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(orjson.dumps(account, option=orjson.OPT_INDENT_2))
    target.chmod(0o600)
    return account


class FcmPeer:
    provider = "fcm"

    def __init__(
        self,
        accounts: list[dict[str, Any]],
        *,
        project_id: str = "herald-dev",
        projects: set[str] | frozenset[str] = frozenset(),
        faults: FaultPlan | None = None,
        outbox: Outbox | None = None,
        token_ttl_s: int = 3600,
        keep: bool = True,
    ) -> None:
        self.project_id = project_id
        self.projects = {project_id, *projects}  # where the service accounts may send
        self.faults = faults or FaultPlan()
        self.outbox = outbox
        self.token_ttl_s = token_ttl_s
        self.keep = keep
        self._keys: dict[str, tuple[rsa.RSAPublicKey, str | None]] = {}
        for account in accounts:
            private = serialization.load_pem_private_key(account["private_key"].encode(), password=None)
            if not isinstance(private, rsa.RSAPrivateKey):
                raise ValueError("service account private_key is not an RSA key")
            self._keys[account["client_email"]] = (private.public_key(), account.get("token_uri"))
        self.access_tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.token_requests: list[dict[str, Any]] = []  # verified JWT claims
        self.accept_tokens = True  # False: every access token is refused (401)
        self.messages: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._send)
        app.on_shutdown.append(self._shutdown)
        return app

    def revoke_tokens(self) -> None:
        """Forget every issued access token, as if they expired early."""
        self.access_tokens.clear()

    async def _shutdown(self, _app: web.Application) -> None:
        self.faults.release_hangs()

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        grant_type = form.get("grant_type")
        if grant_type != JWT_BEARER:
            return _oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant_type!r}")
        assertion = form.get("assertion")
        if not isinstance(assertion, str):
            return _oauth_error("invalid_request", "Missing required parameter: assertion")
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            public_key, token_uri = self._keys[str(unverified.get("iss"))]
            audiences = [str(request.url)] + ([token_uri] if token_uri else [])
            claims = jwt.decode(
                assertion,
                public_key,
                algorithms=["RS256"],
                audience=audiences,
                leeway=30,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except KeyError:
            return _oauth_error("invalid_grant", "Invalid JWT: unknown issuer.")
        except jwt.InvalidSignatureError:
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        except jwt.PyJWTError as exc:
            return _oauth_error("invalid_grant", f"Invalid JWT: {type(exc).__name__}")
        if claims["exp"] - claims["iat"] > 3600:
            return _oauth_error(
                "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes)."
            )
        if FCM_SCOPE not in str(claims["scope"]).split():
            return _oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        self.token_requests.append(claims)
        token = "ya29." + secrets.token_urlsafe(48)
        self.access_tokens[token] = time.monotonic() + self.token_ttl_s
        return json_response({"access_token": token, "expires_in": self.token_ttl_s, "token_type": "Bearer"})

    def _fault(self, status: int, headers: dict[str, str]) -> web.StreamResponse:
        return google_error(
            status, _MESSAGES.get(status, "error"), fcm_code=_FCM_CODES.get(status), headers=headers
        )

    async def _send(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            doc = orjson.loads(raw)
            token = str(doc["message"]["token"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            token = ""
        return self.faults.note([token], await self._answer(request, raw))

    async def _answer(self, request: web.Request, raw: bytes) -> web.StreamResponse:
        faulty = await apply_faults(request, self.faults, self._fault)
        if faulty is not None:
            return faulty
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ")
        expiry = self.access_tokens.get(token)
        if not self.accept_tokens or expiry is None or expiry < time.monotonic():
            return google_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token.",
            )
        project = request.match_info["project"]
        if project not in self.projects:
            return google_error(403, "Permission 'cloudmessaging.messages.create' denied on resource.")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return google_error(400, "Invalid JSON payload received.")
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict):
            return google_error(
                400, 'Invalid JSON payload received. Unknown name "message".', fcm_code="INVALID_ARGUMENT"
            )
        problem = _validate(message)
        if problem is not None:
            return problem
        push_token = message.get("token")
        if push_token in self.faults.invalid:
            return google_error(404, "Requested entity was not found.", fcm_code="UNREGISTERED")
        name = f"projects/{project}/messages/0:{time.time_ns() // 1000}%{secrets.token_hex(8)}"
        self._capture(message, name, project)
        self.faults.meter.record()
        return json_response({"name": name})

    def _capture(self, message: dict[str, Any], name: str, project: str) -> None:
        notification = message.get("notification") or {}
        record = {
            "provider": self.provider,
            "project": project,
            "to": message.get("token") or message.get("topic") or message.get("condition"),
            "title": notification.get("title"),
            "body": notification.get("body"),
            "data": message.get("data") or {},
            "name": name,
        }
        if self.keep:
            self.messages.append(record)
            self.requests.append(message)
        if self.outbox is not None:
            self.outbox.write("push", record)


def _validate(message: dict[str, Any]) -> web.Response | None:
    targets = [k for k in ("token", "topic", "condition") if k in message]
    if len(targets) != 1:
        return google_error(
            400, "Exactly one of token, topic or condition must be set.", fcm_code="INVALID_ARGUMENT"
        )
    token = message.get("token")
    if "token" in targets and (not isinstance(token, str) or not _TOKEN.match(token)):
        return google_error(
            400,
            "The registration token is not a valid FCM registration token",
            fcm_code="INVALID_ARGUMENT",
            field="message.token",
        )
    notification = message.get("notification", {})
    if not isinstance(notification, dict) or not all(isinstance(v, str) for v in notification.values()):
        return google_error(400, "Invalid value at 'message.notification'.", fcm_code="INVALID_ARGUMENT")
    data = message.get("data", {})
    if not isinstance(data, dict):
        return google_error(400, "Invalid value at 'message.data'.", fcm_code="INVALID_ARGUMENT")
    for i, (key, value) in enumerate(data.items()):
        if not isinstance(value, str):
            return google_error(
                400,
                f"Invalid value at 'message.data[{i}].value' (TYPE_STRING)",
                fcm_code="INVALID_ARGUMENT",
                field=f"message.data[{i}].value",
            )
        if _RESERVED_DATA.match(key):
            return google_error(
                400, f"Invalid data payload key: {key}", fcm_code="INVALID_ARGUMENT", field="message.data"
            )
    for block, (names, string_maps) in _BLOCKS.items():
        if block in message and (problem := _validate_block(block, message[block], names, string_maps)):
            return google_error(400, problem, fcm_code="INVALID_ARGUMENT", field=f"message.{block}")
    return None


def _validate_block(block: str, value: Any, names: frozenset[str], string_maps: frozenset[str]) -> str | None:
    """FCM's complaint about one override block, or None."""
    where = f"message.{block}"
    if not isinstance(value, dict):
        return f"Invalid value at '{where}': expected an object."
    for key, item in value.items():
        if key not in names:
            return f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field."
        if key in string_maps and (
            not isinstance(item, dict) or not all(isinstance(v, str) for v in item.values())
        ):
            return f"Invalid value at '{where}.{key}': a map of strings."
        if key in ("notification", "payload", "fcm_options") and not isinstance(item, dict):
            return f"Invalid value at '{where}.{key}': expected an object."
    if block == "android":
        if value.get("priority", "NORMAL") not in ("NORMAL", "HIGH"):
            return f"Invalid value at '{where}.priority' (type.googleapis.com/AndroidMessagePriority)"
        if "ttl" in value and not (isinstance(value["ttl"], str) and _DURATION.match(value["ttl"])):
            return f"Invalid value at '{where}.ttl' (type.googleapis.com/google.protobuf.Duration)"
        unknown = set(value.get("notification") or {}) - _ANDROID_NOTIFICATION
        if unknown:
            return (
                f"Invalid JSON payload received. Unknown name \"{min(unknown)}\" at '{where}.notification'."
            )
    return None


def _oauth_error(error: str, description: str) -> web.Response:
    return json_response({"error": error, "error_description": description}, 400)
