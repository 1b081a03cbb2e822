"""Whatever is POSTed to /api/messages, the answer is a 4xx (or a 200 for an activity the bot ignores),
never a 5xx, and nothing is logged with a traceback.

Each body is sent three ways: with no app id (the Emulator set-up), with an app id but no token (401
before the body is read), and with a valid Bot Framework token (the body is then parsed and refused).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.bot.teams.activities import APP_ID, personal_message
from tests.bot.teams.conftest import Signer, TeamsBotFactory
from tests.fakes.bot_connector import FakeBotConnector

Body = bytes | Callable[[str], dict[str, Any] | bytes]


def _without(*keys: str) -> Callable[[str], dict[str, Any]]:
    def build(service_url: str) -> dict[str, Any]:
        activity = personal_message("help", service_url=service_url)
        for key in keys:
            del activity[key]
        return activity

    return build


def _with(**fields: Any) -> Callable[[str], dict[str, Any]]:
    def build(service_url: str) -> dict[str, Any]:
        return {**personal_message("help", service_url=service_url), **fields}

    return build


def _nested_value(depth: int) -> Callable[[str], bytes]:
    """An otherwise valid activity whose `value` nests `depth` objects (too deep for json.dumps)."""

    def build(service_url: str) -> bytes:
        activity = {**personal_message("help", service_url=service_url), "value": "@@"}
        return json.dumps(activity).encode().replace(b'"@@"', b'{"a":' * depth + b"1" + b"}" * depth)

    return build


MALFORMED: dict[str, Body] = {
    "nested arrays": b"[" * 100_000 + b"]" * 100_000,
    "nested objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "an activity nested 5,000 deep": _nested_value(5_000),
    "an activity nested 200 deep": _nested_value(200),
    "over the size limit": b'{"type": "message", "text": "' + b"x" * 2_000_000 + b'"}',
    "not JSON": b"{",
    "empty": b"",
    "invalid UTF-8": b'{"type": "message\xff\xfe"}',
    "null": b"null",
    "a list": b"[]",
    "a string": b'"message"',
    "a number": b"1e999",
    "no type": _without("type"),
    "type not a string": _with(type=["message"]),
    "no conversation": _without("conversation"),
    "conversation a string": _with(conversation="a:1"),
    "conversation without id": _with(conversation={"conversationType": "personal"}),
    "no serviceUrl": _without("serviceUrl"),
    "serviceUrl a number": _with(serviceUrl=12),
    "serviceUrl not http": _with(serviceUrl="file:///etc/passwd"),
    "channelId a list": _with(channelId=["msteams"]),
    "attachments a number": _with(attachments=5),
    "attachments of strings": _with(attachments=["x", 1]),
    "entities a number": _with(entities=7),
    "from a string": _with(**{"from": "someone"}),
    "text an object": _with(text={"a": 1}),
    "channelData a list": _with(channelData=[1, 2]),
    "conversation id a number": _with(conversation={"id": 5}),
    "members added a number": _with(type="conversationUpdate", membersAdded=3),
    "invoke value a string": _with(type="invoke", name="adaptiveCard/action", value="x"),
}


def _encode(body: Body, service_url: str) -> bytes:
    built = body(service_url) if callable(body) else body
    return built if isinstance(built, bytes) else json.dumps(built).encode()


@pytest.mark.parametrize("mode", ["no app id", "app id, no token", "app id, signed"])
async def test_malformed_requests_get_4xx_and_no_traceback(
    make_teams_bot: TeamsBotFactory,
    fake: FakeBotConnector,
    sign: Signer,
    caplog: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    bot = await make_teams_bot(app_id=None if mode == "no app id" else APP_ID)
    headers = {"Content-Type": "application/json"}
    if mode == "app id, signed":
        headers["Authorization"] = f"Bearer {sign()}"

    statuses: dict[str, int] = {}
    with capture_logs() as logs, caplog.at_level(logging.INFO):
        for name, body in MALFORMED.items():
            response = await bot.client.post(
                "/api/messages", data=_encode(body, fake.service_url), headers=headers
            )
            await response.read()
            await bot.chat.runner.drain()
            statuses[name] = response.status

    server_errors = {name: status for name, status in statuses.items() if status >= 500}
    assert server_errors == {}
    if mode == "app id, no token":
        assert set(statuses.values()) == {401}  # refused before the body was read
    assert [e for e in logs if e.get("exc_info") or e.get("log_level") in ("error", "critical")] == []
    # asyncio's "Task exception was never retrieved" is written when an earlier test's task is garbage
    # collected, whenever that happens: not a response to these requests.
    ours = [r for r in caplog.records if r.name != "asyncio"]
    assert [r.getMessage() for r in ours if r.exc_info or r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("name", ["no conversation", "conversation without id", "no serviceUrl"])
async def test_an_activity_the_bot_could_not_answer_is_400(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, sign: Signer, name: str
) -> None:
    bot = await make_teams_bot(app_id=APP_ID)
    body = _encode(MALFORMED[name], fake.service_url)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {sign()}"}

    with capture_logs() as logs:
        response = await bot.client.post("/api/messages", data=body, headers=headers)

    assert response.status == 400
    assert [e["event"] for e in logs] == ["teams_bad_request"]  # one line, saying why
    assert fake.calls == []
