"""What arrives at POST /slack/events, checked before Bolt sees it: pure functions, no I/O.

The signature is verified on the raw bytes first, so nothing an unauthenticated sender wrote is
parsed at all; then the body is decoded and parsed once, and refused unless it is a Slack payload of
the shapes Bolt and `translate` read. Bolt's own parsing and verification assume both (a timestamp
header `abc`, a JSON list or a `team` that is a number made them raise, and the service answer 500).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

MAX_AGE_S = 5 * 60  # Slack's replay window: a request signed longer ago (or ahead) is refused
_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # Unix seconds, as Slack writes them
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")

# The fields read on the way in (by Bolt's context extraction, its listener matchers and
# translate.py), each with the types Slack sends it as. Fields not listed are not read.
_TEXT = (str,)
_REF = (str, dict)  # `team`, `user`, `channel`, `enterprise`: an id, or an object with one
_FIELDS: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(
        "type subtype event_id team_id user_id channel_id enterprise_id api_app_id command text "
        "trigger_id response_url challenge ts thread_ts event_ts channel_type user_team source_team "
        "message_ts id callback_id private_metadata".split(),
        _TEXT,
    ),
    **dict.fromkeys(("team", "user", "channel", "enterprise"), _REF),
    **dict.fromkeys(
        ("event", "message", "previous_message", "container", "assistant_thread", "item", "view", "state"),
        (dict,),
    ),
    **dict.fromkeys(("authorizations", "actions", "files", "response_urls"), (list,)),
}
_ACTION_FIELDS: dict[str, tuple[type, ...]] = {"action_id": _TEXT, "value": _TEXT, "block_id": _TEXT}
_FILE_FIELDS: dict[str, tuple[type, ...]] = dict.fromkeys(
    ("id", "name", "title", "mimetype", "mode", "url_private", "url_private_download", "permalink"),
    _TEXT,
)
_MAX_NESTING = 4  # event → message → … : Slack's payloads nest the fields above no deeper


class BadRequest(ValueError):
    """A signed body that is not a Slack payload; the message says why (for the log, not the caller)."""


def signature_problem(
    raw: bytes, *, timestamp: str | None, signature: str | None, secret: str, now: float
) -> str | None:
    """Why this request was not signed by Slack with `secret` in the last five minutes, or None.

    Every header is checked for form before it is used: `int("1e10")` and `compare_digest` on a
    non-ASCII string raise, and a raise here was a 500.
    """
    if not timestamp or not signature:
        return "no signature headers"
    if not _TIMESTAMP.fullmatch(timestamp):
        return "timestamp header not a number"
    if abs(now - int(timestamp)) > MAX_AGE_S:
        return "timestamp more than five minutes away"
    if not _SIGNATURE.fullmatch(signature):
        return "signature header malformed"
    base = b"v0:" + timestamp.encode() + b":" + raw
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return "signature does not match"
    return None


def parse_payload(raw: bytes, content_type: str) -> tuple[str, dict[str, Any]]:
    """The body as text (what Bolt is given) and as the payload it holds, or BadRequest.

    JSON for Events API bodies, a form for slash commands, and a form whose `payload` field is JSON
    for interactivity: the same rule Bolt applies, except that a command whose words contain
    "payload" stays a command.
    """
    if not raw:
        raise BadRequest("empty body")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body not UTF-8") from None
    if content_type == "application/json" or text.startswith("{"):
        body = _json_object(text, "body")
    else:
        form = _form(text)
        body = _json_object(form["payload"], "payload") if "payload" in form else dict(form)
    _check_fields(body, _FIELDS, depth=0)
    _check_what_bolt_reads(body)
    return text, body


def _check_what_bolt_reads(body: Mapping[str, Any]) -> None:
    """The keys Bolt's listener matching reads without asking (a KeyError, and a 500, when one is
    missing): a form's view its type and callback_id, a click each action's action_id."""
    kind = body.get("type")
    if kind in ("view_submission", "view_closed"):
        view = body.get("view")
        if not isinstance(view, dict) or not all(
            isinstance(view.get(k), str) for k in ("type", "callback_id")
        ):
            raise BadRequest("view without its type and callback_id")
    if kind == "block_actions" and not all(
        isinstance(a.get("action_id"), str) for a in body.get("actions") or ()
    ):
        raise BadRequest("an action without its action_id")


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise BadRequest(f"{what} not JSON") from None
    if not isinstance(value, dict):
        raise BadRequest(f"{what} not a JSON object")
    return value


def _form(text: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("form body malformed") from None
    form = dict(pairs)
    if len(form) != len(pairs):  # which of two values counts would be anyone's guess
        raise BadRequest("form field repeated")
    return form


def _check_fields(data: Mapping[str, Any], fields: Mapping[str, tuple[type, ...]], *, depth: int) -> None:
    for key, kinds in fields.items():
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, kinds):
            raise BadRequest(f"{key} is a {type(value).__name__}")
        if isinstance(value, list):
            _check_items(key, value, depth)
        elif isinstance(value, dict) and depth < _MAX_NESTING:
            _check_fields(value, _FIELDS, depth=depth + 1)


def _check_items(key: str, items: list[Any], depth: int) -> None:
    schema = {"actions": _ACTION_FIELDS, "files": _FILE_FIELDS}.get(key, _FIELDS)
    for item in items:
        if not isinstance(item, dict):
            raise BadRequest(f"{key} holds a {type(item).__name__}")
        if depth < _MAX_NESTING:
            _check_fields(item, schema, depth=depth + 1)
