"""Slack Connect: people of another organisation, in a channel or DM shared with this workspace, get no
answer from this workspace's knowledge base and cannot add to it; the reply tells them why. Members of
the same Enterprise Grid organisation, from another of its workspaces, keep working.

The workspace is T111 in the Grid org E111 (the envelope's `enterprise_id`, as in the fixtures);
T222 is another workspace of E111; T999 and E999 belong to someone else.
"""

from __future__ import annotations

import pytest

from bot.slack import text as slack_text
from tests.bot.slack import payloads
from tests.bot.slack.conftest import KB, VPN_GUIDE, SlackHarness

QUESTION = "How do I rotate the VPN certificate?"
OUTSIDER = "W999"


async def _with_guide(slack: SlackHarness) -> None:
    await slack.engine.ingest(KB, "vpn.md", VPN_GUIDE, uploader=payloads.USER)


def _refusals(slack: SlackHarness) -> list[str]:
    return [str(e["text"]) for e in slack.fake.ephemeral]


@pytest.mark.parametrize("team", ["T999", "E999"])  # a workspace, or an org (user_team can name either)
async def test_a_question_from_another_organisation_is_refused_with_the_reason(
    slack: SlackHarness, team: str
) -> None:
    await _with_guide(slack)
    slack.fake.teams["T999"] = None  # a workspace in no Grid org
    body = payloads.from_team(payloads.app_mention(QUESTION, user=OUTSIDER), team)

    assert (await slack.send(body)).status == 200
    await slack.settle()

    assert slack.posts() == []  # no placeholder, no answer in the shared channel
    assert _refusals(slack) == [slack_text.CONNECT_REFUSED]
    assert slack.fake.ephemeral[0]["user"] == OUTSIDER


async def test_the_same_message_as_mention_and_message_is_refused_once(slack: SlackHarness) -> None:
    mention = payloads.from_team(payloads.app_mention(QUESTION, user=OUTSIDER), "T999")
    message = payloads.from_team(
        payloads.channel_message(mention["event"]["text"], ts=mention["event"]["ts"], user=OUTSIDER), "T999"
    )

    for body in (mention, message):
        await slack.send(body)
    await slack.settle()

    assert _refusals(slack) == [slack_text.CONNECT_REFUSED]


async def test_a_document_from_another_organisation_is_not_downloaded_or_added(slack: SlackHarness) -> None:
    shared = slack.fake.add_file("vpn.md", VPN_GUIDE, user=OUTSIDER)
    body = payloads.from_team(payloads.dm_file_share([shared], user=OUTSIDER), "T999")

    await slack.send(body)
    await slack.settle()

    assert slack.fake.downloads == []
    assert await slack.engine.documents(KB) == []
    (reply,) = slack.fake.thread(payloads.DM, body["event"]["ts"])  # a DM: said in its thread
    assert reply["text"] == slack_text.CONNECT_REFUSED


async def test_another_organisations_reply_in_a_thread_the_bot_is_in_is_left_alone(
    slack: SlackHarness,
) -> None:
    await _with_guide(slack)
    first = payloads.app_mention(QUESTION)
    await slack.send(first)
    await slack.settle()

    reply = payloads.channel_message("And the old one?", thread_ts=first["event"]["ts"], user=OUTSIDER)
    await slack.send(payloads.from_team(reply, "T999"))
    await slack.settle()

    assert len(slack.posts()) == 1  # only the first answer; not asked, so not refused either
    assert _refusals(slack) == []


async def test_a_member_of_the_same_grid_org_in_an_org_shared_channel_is_answered(
    slack: SlackHarness,
) -> None:
    await _with_guide(slack)
    slack.fake.teams["T222"] = "E111"
    body = payloads.from_team(payloads.app_mention(QUESTION), "T222", ext_shared=False)

    await slack.send(body)
    await slack.settle()

    (answer,) = slack.fake.thread(payloads.CHANNEL, body["event"]["ts"])
    assert "Keychain" in answer["text"]
    assert [c.params["team"] for c in slack.fake.calls_to("team.info")] == ["T222"]


@pytest.mark.parametrize("ext_shared", [False, None], ids=["flag false", "flag missing"])
async def test_another_organisation_is_refused_whatever_the_shared_channel_flag_says(
    slack: SlackHarness, ext_shared: bool | None
) -> None:
    await _with_guide(slack)
    slack.fake.teams["T999"] = "E999"
    body = payloads.from_team(
        payloads.app_mention(QUESTION, user=OUTSIDER), "T999", ext_shared=bool(ext_shared)
    )
    if ext_shared is None:
        body["event"].pop("is_ext_shared_channel", None)
        body.pop("is_ext_shared_channel", None)

    await slack.send(body)
    await slack.settle()

    assert slack.fake.thread(payloads.CHANNEL, body["event"]["ts"]) == []
    assert _refusals(slack) == [slack_text.CONNECT_REFUSED]


async def test_a_dm_thread_as_in_the_fixture_is_answered(slack: SlackHarness) -> None:
    # events/message_im_thread.json: user_team T111, source_team T222, enterprise E111.
    await _with_guide(slack)
    slack.fake.teams["T222"] = "E111"
    body = payloads.dm_message(QUESTION, thread_ts=payloads.new_ts())
    body["event"]["source_team"] = "T222"

    await slack.send(body)
    await slack.settle()

    (answer,) = slack.fake.thread(payloads.DM, body["event"]["thread_ts"])
    assert "Keychain" in answer["text"]


async def test_in_a_slack_connect_channel_the_grid_org_of_a_workspace_is_looked_up_once(
    slack: SlackHarness,
) -> None:
    await _with_guide(slack)
    slack.fake.teams.update({"T222": "E111", "T999": "E999"})
    colleague = [payloads.from_team(payloads.app_mention(QUESTION), "T222") for _ in range(2)]
    stranger = payloads.from_team(payloads.app_mention(QUESTION, user=OUTSIDER), "T999")

    for body in (*colleague, stranger):
        await slack.send(body)
    await slack.settle()

    for body in colleague:
        (answer,) = slack.fake.thread(payloads.CHANNEL, body["event"]["ts"])
        assert "Keychain" in answer["text"]
    assert slack.fake.thread(payloads.CHANNEL, stranger["event"]["ts"]) == []
    assert _refusals(slack) == [slack_text.CONNECT_REFUSED]
    assert sorted(c.params["team"] for c in slack.fake.calls_to("team.info")) == ["T222", "T999"]


async def test_when_the_org_of_a_workspace_cannot_be_known_the_message_is_refused(
    slack: SlackHarness,
) -> None:
    await _with_guide(slack)
    slack.fake.fail_next("team.info", status=200, error="missing_scope")
    body = payloads.from_team(payloads.app_mention(QUESTION), "T222")

    await slack.send(body)
    await slack.settle()

    assert slack.posts() == []
    assert _refusals(slack) == [slack_text.CONNECT_REFUSED]
