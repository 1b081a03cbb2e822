"""Whatever is POSTed to /slack/events, the answer is never a 5xx and nothing is logged with a
traceback: a request Slack did not sign (or signed too long ago) is 401 before its body is parsed, a
signed body that is not a Slack payload is 400, and the real kinds of request keep working.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from structlog.testing import capture_logs

from tests.bot.slack import payloads
from tests.bot.slack.conftest import SlackHarness

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Case:
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)  # replace the signed ones


def _event() -> bytes:
    return json.dumps(payloads.app_mention("How do I rotate the VPN certificate?")).encode()


def _envelope(**fields: Any) -> bytes:
    return json.dumps({**payloads.app_mention("hello"), **fields}).encode()


def _event_with(**fields: Any) -> bytes:
    body = payloads.app_mention("hello")
    body["event"].update(fields)
    return json.dumps(body).encode()


def _payload(raw: str) -> Case:
    return Case(f"payload={quote(raw)}".encode(), FORM)


def _signed_at(stamp: str, body: bytes | None = None) -> Case:
    """A body signed for a timestamp header as given (a number Slack would never send, or none)."""
    body = body or _event()
    signed = payloads.signed_headers(body, content_type=JSON)
    signed["X-Slack-Request-Timestamp"] = stamp
    return Case(body, headers=signed)


# Bodies that are not a Slack payload, whoever signed them.
BAD_BODIES: dict[str, Case] = {
    "not JSON": Case(b"{"),
    "JSON null": Case(b"null"),
    "a JSON list": Case(b"[]"),
    "a JSON string": Case(b'"event_callback"'),
    "a JSON number out of range": Case(b"1e999"),
    "empty": Case(b""),
    "invalid UTF-8 in JSON": Case(b'{"type": "event_callback\xff\xfe"}'),
    "nested 100,000 deep": Case(b"[" * 100_000 + b"]" * 100_000),
    "event not an object": Case(_envelope(event="message")),
    "event type a list": Case(_event_with(type=["app_mention"])),
    "event text an object": Case(_event_with(text={"a": 1})),
    "event files a number": Case(_event_with(files=3)),
    "authorizations a number": Case(_envelope(authorizations=5)),
    "team an integer": Case(_envelope(team=7)),
    "payload not JSON": _payload("{"),
    "payload null": _payload("null"),
    "payload a list": _payload("[]"),
    "payload actions a string": _payload(json.dumps({"type": "block_actions", "actions": "x"})),
    # Bolt reads every action's action_id without asking: a KeyError, and a 500, when one had none.
    "an action without its action_id": _payload(
        json.dumps({"type": "block_actions", "actions": [{"type": "feedback_buttons", "value": "up:Ev1"}]})
    ),
    "form with invalid UTF-8": Case(b"command=%2Fthreadwise&text=\xff\xfe", FORM),
    "form fields repeated as lists": Case(b"command=/a&command=/b&team_id=T111", FORM),
}


def _unsigned_cases() -> dict[str, Case]:
    """What anyone on the internet can send: every bad body without a signature, and a real event
    with every way the two headers can be wrong."""
    stale = int(time.time()) - 10 * 60
    body = _event()
    bad_headers: dict[str, Case] = {
        "no signature headers": Case(body, headers={"Content-Type": JSON}),
        "timestamp abc": _signed_at("abc"),
        "timestamp empty": _signed_at(""),
        "timestamp 1e10": _signed_at("1e10"),
        "timestamp negative": _signed_at("-1"),
        "timestamp beyond any clock": _signed_at("9" * 40),
        "timestamp with a sign": _signed_at(f"+{int(time.time())}"),
        "signed 10 minutes ago": Case(
            body, headers=payloads.signed_headers(body, content_type=JSON, timestamp=stale)
        ),
        "signed with another secret": Case(
            body, headers=payloads.signed_headers(body, content_type=JSON, secret="guess")
        ),
        "signature not ASCII": Case(
            body,
            headers={
                "Content-Type": JSON,
                "X-Slack-Request-Timestamp": str(int(time.time())),
                "X-Slack-Signature": "v0=" + "é" * 64,
            },
        ),
        "signature of another version": Case(
            body,
            headers={
                **payloads.signed_headers(body, content_type=JSON),
                "X-Slack-Signature": payloads.signed_headers(body, content_type=JSON)[
                    "X-Slack-Signature"
                ].replace("v0=", "v1="),
            },
        ),
        "signature empty": Case(
            body,
            headers={**payloads.signed_headers(body, content_type=JSON), "X-Slack-Signature": ""},
        ),
    }
    unsigned = {
        f"unsigned, {name}": Case(
            case.body,
            case.content_type,
            {"Content-Type": case.content_type, "X-Slack-Request-Timestamp": str(int(time.time()))},
        )
        for name, case in BAD_BODIES.items()
    }
    return {**unsigned, **bad_headers}


async def _post(slack: SlackHarness, case: Case) -> tuple[int, str]:
    headers = case.headers or payloads.signed_headers(case.body, content_type=case.content_type)
    response = await slack.http.post("/slack/events", data=case.body, headers=headers)
    text = await response.text()
    await slack.settle()
    return response.status, text


def _tracebacks(logs: list[dict[str, Any]], caplog: pytest.LogCaptureFixture) -> list[str]:
    structured = [
        str(e["event"]) for e in logs if e.get("exc_info") or e.get("log_level") in ("error", "critical")
    ]
    stdlib = [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    return structured + stdlib


async def test_unsigned_and_badly_signed_requests_are_401_with_no_traceback(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    statuses: dict[str, int] = {}
    with capture_logs() as logs, caplog.at_level(logging.INFO):
        for name, case in _unsigned_cases().items():
            statuses[name], _ = await _post(slack, case)

    assert len(statuses) >= 26
    assert {name: s for name, s in statuses.items() if s != 401} == {}
    assert _tracebacks(logs, caplog) == []
    assert [c.method for c in slack.fake.calls] == ["auth.test"]  # nothing was posted anywhere


async def test_signed_bodies_that_are_not_slack_payloads_are_400_with_no_traceback(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    statuses: dict[str, int] = {}
    with capture_logs() as logs, caplog.at_level(logging.INFO):
        for name, case in BAD_BODIES.items():
            statuses[name], _ = await _post(slack, case)

    assert {name: s for name, s in statuses.items() if s != 400} == {}
    assert _tracebacks(logs, caplog) == []
    assert [c.method for c in slack.fake.calls] == ["auth.test"]


@pytest.mark.parametrize(
    ("name", "case"),
    [
        ("unsigned, not JSON", Case(b"{", headers={"Content-Type": JSON})),
        ("timestamp 1e10", _signed_at("1e10")),
        ("signed, a JSON list", Case(b"[]")),
    ],
)
async def test_a_refused_request_is_one_log_line_that_says_why(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture, name: str, case: Case
) -> None:
    with capture_logs() as logs, caplog.at_level(logging.INFO):
        status, _ = await _post(slack, case)

    assert status in (400, 401)
    (line,) = [e for e in logs if e.get("log_level") != "debug"]
    assert line["event"] == ("slack_bad_request" if status == 400 else "slack_request_refused")
    assert line["reason"]
    others = [r for r in caplog.records if r.levelno >= logging.INFO and r.name != "aiohttp.access"]
    assert [r.getMessage() for r in others] == []


async def test_the_real_kinds_of_request_still_work_when_signed(slack: SlackHarness) -> None:
    await slack.engine.ingest(
        f"slack-{payloads.TEAM}", "vpn.md", b"# VPN\n\nRotate the VPN certificate in the Keychain app.\n"
    )
    challenge = payloads.url_verification()
    mention = payloads.app_mention("How do I rotate the VPN certificate?")
    command = payloads.slash_command("docs", response_url=slack.fake.response_url())
    # Bolt reads any form body containing "payload" as an interactivity payload: a command whose
    # words say "payload" must still be a command.
    command_saying_payload = payloads.slash_command("payload", response_url=slack.fake.response_url())
    click = payloads.block_actions(
        action_id="threadwise_feedback_up", value="Ev1", message={"ts": "1.000001", "thread_ts": "1.000000"}
    )

    status, text = await _post(slack, Case(json.dumps(challenge).encode()))
    assert (status, json.loads(text)) == (200, {"challenge": challenge["challenge"]})
    assert (await _post(slack, Case(json.dumps(mention).encode())))[0] == 200
    assert (await _post(slack, Case(command.encode(), FORM)))[0] == 200
    assert (await _post(slack, Case(command_saying_payload.encode(), FORM)))[0] == 200
    assert (await _post(slack, Case(click.encode(), FORM)))[0] == 200

    (answer,) = slack.fake.thread(payloads.CHANNEL, mention["event"]["ts"])
    assert "Keychain" in answer["text"]
    assert len(slack.fake.responses) == 2  # both commands answered through their response_url
    assert len(slack.fake.calls_to("chat.postEphemeral")) == 1  # the thanks for the vote
