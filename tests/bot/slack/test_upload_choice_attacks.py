"""Attacks on the choice of who may ask about a DM upload, through Slack's real endpoint: clicks that
are not the sender's (another user, another workspace, a block naming someone else's upload, a picked
conversation that is no channel), and the races of a click with the default's timer and with a
re-upload. A choice the sender made is never undone by the default; a refused click never changes a
document, nor the message its sender sees."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote

import pytest

from bot.core.model import Job
from rag.scopes import WORKSPACE, channel_scope, private_scope
from tests.bot.slack import payloads
from tests.bot.slack.conftest import KB, HarnessFactory, SlackHarness

QUESTION = "How many vacation days do new employees get?"
SALES = "C0SALES01"
OTHER = "W-OTHER"
ADMIN = "W-ADMIN"
SHARE, KEEP, PICK = "threadwise_scope_workspace", "threadwise_scope_private", "threadwise_scope_channel"


_TS = itertools.count(900_000)  # past any ts the fake gives its own messages in a test


def _own_ts(body: dict[str, Any]) -> dict[str, Any]:
    """`body` with a ts no message of the bot's can have: payloads.new_ts and the fake count alike
    within a second, and a thread is found by its ts."""
    body["event"]["ts"] = body["event"]["event_ts"] = f"{int(time.time())}.{next(_TS):06d}"
    return body


def policy(days: int) -> bytes:
    return f"# Vacation policy\n\nNew employees get {days} vacation days a year.\n".encode()


def _said(message: dict[str, Any]) -> str:
    return str(message.get("text", "")) + json.dumps(message.get("blocks", ""))


async def _upload(
    slack: SlackHarness,
    files: dict[str, bytes] | None = None,
    *,
    text: str = "",
    user: str = payloads.USER,
) -> dict[str, Any]:
    """Send files in a DM (draft.md by default); the bot's reply to them, as it reads now."""
    shared = [slack.fake.add_file(n, b) for n, b in (files or {"draft.md": policy(99)}).items()]
    body = _own_ts(payloads.dm_file_share(shared, text=text, user=user))
    await slack.send(body)
    await slack.settle()
    (reply,) = slack.fake.thread(payloads.DM, body["event"]["ts"])
    return reply


def _scope_block(message: dict[str, Any]) -> dict[str, Any] | None:
    blocks = [
        b for b in message.get("blocks") or [] if str(b.get("block_id", "")).startswith("threadwise_scope_")
    ]
    return blocks[0] if blocks else None


def _now(slack: SlackHarness, message: dict[str, Any]) -> dict[str, Any]:
    """`message` as it reads now."""
    return slack.fake.messages[(payloads.DM, message["ts"])]


async def _click(
    slack: SlackHarness,
    message: dict[str, Any],
    action_id: str,
    *,
    user: str = payloads.USER,
    picked: str = "",
    channel: str = payloads.DM,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    """A click on one of the scope buttons under `message`; `edit` changes the payload first. The
    HTTP status."""
    form = payloads.block_actions(action_id=action_id, value="", message=message, channel=channel, user=user)
    payload = json.loads(unquote(form.removeprefix("payload=")))
    action = payload["actions"][0]
    block = _scope_block(message)
    assert block is not None
    action.update(block_id=block["block_id"])
    if picked:
        action.update(type="conversations_select", selected_conversation=picked)
        del action["value"]
    if edit is not None:
        edit(payload)
    response = await slack.send_form("payload=" + quote(json.dumps(payload)))
    await slack.settle()
    return response.status


async def _scopes(slack: SlackHarness) -> dict[str, str]:
    return {d.name: d.scope for d in await slack.engine.documents(KB)}


async def _answer_in(slack: SlackHarness, channel: str) -> str:
    shown = len(slack.fake.ephemeral)
    body = _own_ts(payloads.app_mention(QUESTION, channel=channel))
    await slack.send(body)
    await slack.settle()
    return _said([*slack.fake.thread(channel, body["event"]["ts"]), *slack.fake.ephemeral[shown:]][-1])


async def _default_due(slack: SlackHarness) -> None:
    """What the serve's timer does every few seconds, once the wait (60 ms in these tests) is over."""
    await asyncio.sleep(0.1)
    assert slack.chat.timer is not None
    await slack.chat.timer.run_due()
    await slack.settle()


class _Queue:
    """A queue that holds the jobs submitted to it: the default's job waiting behind others."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    async def submit(self, job: Job) -> None:
        self.jobs.append(job)


# -- the default never undoes a choice -------------------------------------------------------------


async def test_keep_it_for_me_while_the_defaults_job_waits_in_the_queue_is_not_undone(
    make_slack: HarnessFactory,
) -> None:
    """The timer took the upload and queued its default's job; the sender clicks *Keep it for me*
    before a worker runs it. The default must not make the document the workspace's afterwards."""
    slack = await make_slack(upload_choice_minutes=0.001)
    timer = slack.chat.timer
    assert timer is not None
    await timer.stop()  # its ticks are this test's own
    queue = _Queue()
    timer._runner = queue
    reply = await _upload(slack)
    await asyncio.sleep(0.1)
    assert await timer.run_due() == 1

    await _click(slack, reply, KEEP)
    (default,) = queue.jobs
    await slack.chat.runner.submit(default)
    await slack.settle()

    assert await _scopes(slack) == {"draft.md": private_scope(payloads.USER)}
    assert "99 vacation" not in await _answer_in(slack, payloads.CHANNEL)


async def test_keep_it_for_me_under_a_second_upload_of_the_same_file_stops_the_first_ones_default(
    make_slack: HarnessFactory,
) -> None:
    """The same file sent again while the first upload waits for a choice: the sender keeps it
    private with the second reply's buttons. The first upload's default must not share it later."""
    slack = await make_slack(upload_choice_minutes=0.001)
    await _upload(slack)
    again = await _upload(slack)  # the same bytes: "unchanged", with buttons of its own

    await _click(slack, again, KEEP)
    await _default_due(slack)

    assert await _scopes(slack) == {"draft.md": private_scope(payloads.USER)}
    assert "99 vacation" not in await _answer_in(slack, payloads.CHANNEL)


async def test_a_second_uploads_default_changes_only_its_new_documents(make_slack: HarnessFactory) -> None:
    slack = await make_slack(upload_choice_minutes=0.001)
    first = await _upload(slack, {"a.md": policy(11), "b.md": policy(12)})
    await _click(slack, first, KEEP)
    await _upload(slack, {"a.md": policy(11), "b.md": policy(14), "c.md": policy(13)})

    await _default_due(slack)

    mine = private_scope(payloads.USER)
    assert await _scopes(slack) == {"a.md": mine, "b.md": mine, "c.md": WORKSPACE}


async def test_a_document_forgotten_and_sent_again_waits_for_its_new_uploads_choice(
    make_slack: HarnessFactory,
) -> None:
    """The first upload's default comes due after the document was deleted and sent again, and the
    sender kept the new one private: it stays private."""
    slack = await make_slack(upload_choice_minutes=0.001)
    await _upload(slack)
    await slack.send(_own_ts(payloads.dm_message("forget draft.md")))
    await slack.settle()
    again = await _upload(slack, {"draft.md": policy(98)})
    await _click(slack, again, KEEP)

    await _default_due(slack)

    assert await _scopes(slack) == {"draft.md": private_scope(payloads.USER)}


# -- clicks that are not the sender's --------------------------------------------------------------


def _from_team(team: str) -> Callable[[dict[str, Any]], None]:
    def edit(payload: dict[str, Any]) -> None:
        payload["team"]["id"] = team
        payload["user"]["team_id"] = team

    return edit


async def test_a_refused_click_leaves_the_senders_reply_and_buttons_as_they_were(
    make_slack: HarnessFactory,
) -> None:
    """Someone else's click (or one from another workspace) is refused to them alone: the sender's
    reply keeps its words and its buttons, and they can still choose."""
    slack = await make_slack(upload_choice_minutes=10)
    reply = await _upload(slack)
    shown = _said(_now(slack, reply))

    assert await _click(slack, reply, SHARE, user=OTHER) == 200
    assert await _click(slack, reply, SHARE, edit=_from_team("T999")) == 200

    assert _said(_now(slack, reply)) == shown
    assert await _scopes(slack) == {"draft.md": private_scope(payloads.USER)}
    await _click(slack, reply, KEEP)
    assert "Only you can ask about it" in _now(slack, reply)["text"]


async def test_a_click_for_a_document_deleted_since_says_so(make_slack: HarnessFactory) -> None:
    slack = await make_slack(upload_choice_minutes=10)
    reply = await _upload(slack)
    await slack.send(_own_ts(payloads.dm_message("forget draft.md")))
    await slack.settle()

    await _click(slack, reply, SHARE)

    said = _now(slack, reply)["text"]
    assert "draft.md" in said and "deleted" in said and "already chosen" not in said
    assert await _scopes(slack) == {}


async def test_a_stale_click_leaves_anothers_document_of_that_name_and_its_default_alone(
    make_slack: HarnessFactory,
) -> None:
    """The sender's document was deleted and someone else sent one of the same name, which waits for
    its own default. The first sender's old buttons change neither it nor when its default applies."""
    slack = await make_slack(upload_choice_minutes=0.001)
    first = await _upload(slack)
    await slack.send(_own_ts(payloads.dm_message("forget draft.md")))
    await slack.settle()
    await _upload(slack, {"draft.md": policy(98)}, user=OTHER)

    await _click(slack, first, SHARE)
    said = _now(slack, first)["text"]
    assert await _scopes(slack) == {"draft.md": private_scope(OTHER)}
    assert "deleted or replaced" in said and "98" not in said and OTHER not in said

    await _default_due(slack)
    assert await _scopes(slack) == {"draft.md": WORKSPACE}  # theirs, as their reply said it would


async def test_buttons_naming_someone_elses_upload_change_nothing_of_theirs(
    make_slack: HarnessFactory,
) -> None:
    slack = await make_slack(upload_choice_minutes=10)
    mine = await _upload(slack)
    theirs = await _upload(slack, {"notes.md": policy(42)}, user=OTHER)
    key = (_scope_block(mine) or {})["block_id"]

    def mine_named(payload: dict[str, Any]) -> None:
        payload["actions"][0]["block_id"] = key

    await _click(slack, theirs, SHARE, user=OTHER, edit=mine_named)

    assert await _scopes(slack) == {
        "draft.md": private_scope(payloads.USER),
        "notes.md": private_scope(OTHER),
    }
    assert "Only you can ask" in _now(slack, mine)["text"] and _scope_block(_now(slack, mine))


async def test_nothing_of_an_upload_waiting_for_a_choice_shows_to_anyone_else(
    make_slack: HarnessFactory,
) -> None:
    slack = await make_slack(upload_choice_minutes=10)
    await _upload(slack)
    said = []
    for words in ("docs", "stats", QUESTION):
        for body in (
            payloads.dm_message(words, user=OTHER),
            payloads.app_mention(words, channel=payloads.CHANNEL),
        ):
            shown = len(slack.fake.ephemeral)
            body = _own_ts(body)
            await slack.send(body)
            await slack.settle()
            channel = body["event"]["channel"]
            said += [_said(m) for m in slack.fake.thread(channel, body["event"]["ts"])]
            said += [_said(m) for m in slack.fake.ephemeral[shown:]]
    assert said and not [s for s in said if "draft" in s or "99 vacation" in s or "1 document" in s]


async def test_the_same_file_sent_again_for_a_channel_is_not_shared_by_the_first_uploads_default(
    make_slack: HarnessFactory,
) -> None:
    slack = await make_slack(upload_choice_minutes=0.001)
    await _upload(slack)
    await _upload(slack, text=f"for <#{SALES}|sales>")
    assert await _scopes(slack) == {"draft.md": channel_scope(SALES)}

    await _default_due(slack)

    assert await _scopes(slack) == {"draft.md": channel_scope(SALES)}


# -- a click that fails -----------------------------------------------------------------------------


async def test_a_click_that_fails_on_our_side_leaves_the_buttons_to_try_again(
    make_slack: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The apology says "please try again": the buttons it would have replaced are still there to."""
    slack = await make_slack(upload_choice_minutes=10)
    reply = await _upload(slack)
    set_scope = slack.engine.set_scope
    failures = iter([RuntimeError("the store is away for a moment")])

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return await set_scope(*args, **kwargs)

    monkeypatch.setattr(slack.engine, "set_scope", flaky)

    await _click(slack, reply, SHARE)
    assert _scope_block(_now(slack, reply)) is not None
    assert any("try again" in m["text"] for m in slack.fake.thread(payloads.DM, reply["thread_ts"]))

    await _click(slack, reply, SHARE)
    assert await _scopes(slack) == {"draft.md": WORKSPACE}
