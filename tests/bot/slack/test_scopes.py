"""Who sees what, through Slack's real endpoint: a channel's documents answer in that channel only, a
person's private documents only in their DM with the bot — never in another place's answer, cached
answer, `docs` list or `forget` reply."""

from __future__ import annotations

from bot.core import text
from rag.scopes import channel_scope, private_scope
from tests.bot.slack import payloads
from tests.bot.slack.conftest import KB, HarnessFactory, SlackHarness, groq_answerer
from tests.fakes.groq_server import FakeGroq

QUESTION = "How many vacation days do new employees get?"
SALES = "C-SALES"
OTHER = "W-OTHER"


def policy(who: str, days: int) -> bytes:
    return f"# Vacation policy of {who}\n\nNew employees get {days} vacation days a year.\n".encode()


async def _places(slack: SlackHarness) -> None:
    engine = slack.engine
    await engine.ingest(KB, "company.md", policy("the company", 25), uploader=OTHER)
    await engine.ingest(
        KB, "sales.md", policy("the sales team", 30), uploader=OTHER, scope=channel_scope(SALES)
    )
    await engine.ingest(
        KB, "draft.md", policy("my draft", 99), uploader=payloads.USER, scope=private_scope(payloads.USER)
    )


async def _ask_in(slack: SlackHarness, channel: str, words: str = QUESTION) -> dict[str, object]:
    """What the bot showed for a mention in `channel`: its reply in the thread, or to the asker alone."""
    shown = len(slack.fake.ephemeral)
    body = payloads.app_mention(words, channel=channel)
    await slack.send(body)
    await slack.settle()
    replies = [*slack.fake.thread(channel, body["event"]["ts"]), *slack.fake.ephemeral[shown:]]
    return replies[-1]


async def _ask_in_dm(slack: SlackHarness, user: str, words: str = QUESTION) -> str:
    body = payloads.dm_message(words, user=user)
    await slack.send(body)
    await slack.settle()
    return _said(slack.fake.thread(payloads.DM, body["event"]["ts"])[-1])


def _said(message: dict[str, object]) -> str:
    return str(message.get("text", "")) + str(message.get("blocks", ""))


async def test_a_channels_documents_answer_there_and_nowhere_else(slack: SlackHarness) -> None:
    await _places(slack)

    in_sales = _said(await _ask_in(slack, SALES))
    elsewhere = _said(await _ask_in(slack, payloads.CHANNEL))

    assert "sales.md" in in_sales and "draft.md" not in in_sales and "99 vacation" not in in_sales
    assert "company.md" in elsewhere
    for hidden in ("sales.md", "the sales team", "30 vacation", "draft.md", "99 vacation"):
        assert hidden not in elsewhere


async def test_a_private_document_answers_only_its_owner_in_their_dm(slack: SlackHarness) -> None:
    await _places(slack)

    mine = await _ask_in_dm(slack, payloads.USER)
    theirs = await _ask_in_dm(slack, OTHER)

    assert "draft.md" in mine and "99 vacation" in mine
    assert "draft.md" not in theirs and "99 vacation" not in theirs and "sales.md" not in theirs


async def test_docs_and_forget_never_name_another_places_documents(slack: SlackHarness) -> None:
    await _places(slack)

    listed = _said(await _ask_in(slack, payloads.CHANNEL, "docs"))
    refused = _said(await _ask_in(slack, payloads.CHANNEL, "forget draft.md"))

    assert "company.md" in listed and "sales.md" not in listed and "draft.md" not in listed
    assert "no document called" in refused.lower() and payloads.USER not in refused
    assert {d.name for d in await slack.engine.documents(KB)} == {"company.md", "sales.md", "draft.md"}


async def test_a_cached_answer_is_never_served_to_a_place_that_may_not_see_its_sources(
    make_slack: HarnessFactory,
) -> None:
    async with FakeGroq(default_text="New employees get 30 days [1].") as fake:
        slack = await make_slack(answerer=groq_answerer(fake))
        await _places(slack)

        await _ask_in(slack, SALES)  # answered by the model from sales.md, and cached
        elsewhere = _said(await _ask_in(slack, payloads.CHANNEL))

        assert len(fake.requests) == 2  # asked again, not served from the sales channel's cache
        assert "sales.md" not in elsewhere and "the sales team" not in str(fake.requests[-1])


# -- what an upload in chat is visible to -------------------------------------------------------------


async def test_a_file_shared_in_a_channel_answers_in_that_channel_only(slack: SlackHarness) -> None:
    shared = slack.fake.add_file("team.md", policy("the channel's team", 30))
    body = payloads.app_mention("our vacation policy", channel=SALES, files=[shared])
    await slack.send(body)
    await slack.settle()

    (confirmed,) = slack.fake.thread(SALES, body["event"]["ts"])
    assert (
        "Added *team.md*" in confirmed["text"] and "Only this channel can ask about it." in confirmed["text"]
    )
    assert [(d.name, d.scope) for d in await slack.engine.documents(KB)] == [
        ("team.md", channel_scope(SALES))
    ]
    assert "team.md" in _said(await _ask_in(slack, SALES))
    assert "team.md" not in _said(await _ask_in(slack, payloads.CHANNEL))


async def test_with_default_upload_scope_private_a_dm_file_answers_only_its_sender(
    make_slack: HarnessFactory,
) -> None:
    slack = await make_slack(default_upload_scope="private")
    shared = slack.fake.add_file("draft.md", policy("my draft", 99))
    body = payloads.dm_file_share([shared])
    await slack.send(body)
    await slack.settle()

    (confirmed,) = slack.fake.thread(payloads.DM, body["event"]["ts"])
    assert "Only you can ask about it, here." in confirmed["text"]
    assert "draft.md" in await _ask_in_dm(slack, payloads.USER)
    assert "draft.md" not in await _ask_in_dm(slack, OTHER)
    assert "draft.md" not in _said(await _ask_in(slack, payloads.CHANNEL))


async def test_with_channel_uploads_off_a_file_shared_in_a_channel_is_not_read(
    make_slack: HarnessFactory,
) -> None:
    slack = await make_slack(channel_uploads="off")
    shared = slack.fake.add_file("team.md", policy("the channel's team", 30))
    await slack.send(payloads.app_mention("our vacation policy", channel=SALES, files=[shared]))
    await slack.settle()

    assert slack.fake.downloads == []
    assert await slack.engine.documents(KB) == []
    assert [e["text"] for e in slack.fake.ephemeral] == [text.CHANNEL_UPLOADS_OFF]


async def test_stats_count_only_what_the_place_may_see(slack: SlackHarness) -> None:
    """`stats` says how many documents there are: another place's are not counted (they "do not
    exist" there, as for `docs`)."""
    await _places(slack)

    in_channel = _said(await _ask_in(slack, payloads.CHANNEL, "stats"))
    in_sales = _said(await _ask_in(slack, SALES, "stats"))

    assert "1 document" in in_channel and "2 documents" in in_sales
