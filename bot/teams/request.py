"""The body of a POST to /api/messages, read defensively: an activity, or the 4xx that answers it.

Anyone on the internet can reach the endpoint, so nothing here may raise: a body nested ten thousand
levels deep (which made `json.loads` raise RecursionError, a 500 with a traceback), invalid UTF-8, JSON
that is not an object, or an object the bot could not reply to (no `conversation` or `serviceUrl`) each
get a 4xx and one log line. Nesting is bounded so that nothing downstream (botbuilder's model, the job
that carries the activity's address, the logs) walks an unbounded structure.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from aiohttp import web
from botbuilder.schema import Activity

log = structlog.get_logger(__name__)

MAX_DEPTH = 64  # a real activity nests about 8 levels (an adaptive card's data a few more)


async def read_activity(request: web.Request) -> tuple[dict[str, Any], Activity] | web.Response:
    """The activity as posted (translate reads it) and as botbuilder's model; or the 4xx to answer."""
    if request.content_type != "application/json":
        return bad_request(415, "expected application/json")
    raw = await request.read()  # bounded by the app's client_max_size (413 above it)
    body = _parse(raw)
    if isinstance(body, str):
        return bad_request(400, body)
    problem = _not_an_activity(body)
    if problem:
        return bad_request(400, problem)
    try:
        return body, Activity().deserialize(body)
    except Exception:  # msrest's DeserializationError and friends: a malformed activity
        return bad_request(400, "the body is not an activity")


def _parse(raw: bytes) -> dict[str, Any] | str:
    """The JSON object, or why it is not one."""
    try:
        body = json.loads(raw)
    except RecursionError:  # the C parser's own guard, far above MAX_DEPTH
        return f"the body is nested deeper than {MAX_DEPTH} levels"
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return "the body is not JSON"
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    if _depth_exceeds(body, MAX_DEPTH):
        return f"the body is nested deeper than {MAX_DEPTH} levels"
    return body


def _depth_exceeds(value: object, limit: int) -> bool:
    """Whether containers nest deeper than `limit`; iterative, so no input can exhaust the stack."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _not_an_activity(body: dict[str, Any]) -> str:
    """Why the bot could neither handle nor answer this object ("" when it can)."""
    if not isinstance(body.get("type"), str):
        return "the activity has no type"
    conversation = body.get("conversation")
    if not isinstance(conversation, dict) or not isinstance(conversation.get("id"), str):
        return "the activity has no conversation"
    service_url = body.get("serviceUrl")
    if not isinstance(service_url, str) or not service_url.startswith(("https://", "http://")):
        return "the activity has no serviceUrl"
    return ""


def bad_request(status: int, reason: str) -> web.Response:
    log.info("teams_bad_request", status=status, reason=reason)
    return web.json_response({"error": reason}, status=status)
