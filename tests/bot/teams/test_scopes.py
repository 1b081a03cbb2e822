"""Who sees what, through Teams' real endpoint: a team channel's documents answer in that channel
(any of its threads) only, a person's private documents only in their personal chat with the bot."""

from __future__ import annotations

import hashlib

from rag.scopes import channel_scope, private_scope
from tests.bot.teams.activities import (
    CHANNEL,
    USER_AAD,
    channel_mention,
    group_chat_mention,
    personal_file_upload,
    personal_message,
)
from tests.bot.teams.conftest import KB, TeamsBot, TeamsBotFactory
from tests.fakes.bot_connector import FakeBotConnector

QUESTION = "How many vacation days do new employees get?"
OTHER_AAD = "0b0b0b0b-0000-4000-8000-000000000001"


def policy(who: str, days: int) -> bytes:
    return f"# Vacation policy of {who}\n\nNew employees get {days} vacation days a year.\n".encode()


async def _bot(make_teams_bot: TeamsBotFactory) -> TeamsBot:
    bot = await make_teams_bot()
    engine = bot.engine
    await engine.ingest(KB, "company.md", policy("the company", 25))
    await engine.ingest(KB, "team.md", policy("the channel's team", 30), scope=channel_scope(CHANNEL))
    await engine.ingest(
        KB, "draft.md", policy("my draft", 99), uploader=USER_AAD, scope=private_scope(USER_AAD)
    )
    return bot


def _last_answer(fake: FakeBotConnector) -> str:
    answer = fake.activities(type="message")[-1]
    return str(answer.text) + str(answer.body.get("entities", ""))


async def test_a_channels_documents_answer_in_its_threads_and_not_in_a_group_chat(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await _bot(make_teams_bot)

    await bot.post(channel_mention(QUESTION, service_url=fake.service_url))
    in_channel = _last_answer(fake)
    await bot.post(channel_mention(QUESTION, service_url=fake.service_url, root="1759990000000"))
    other_thread = _last_answer(fake)
    await bot.post(group_chat_mention(QUESTION, service_url=fake.service_url))
    in_group = _last_answer(fake)

    assert "team.md" in in_channel and "team.md" in other_thread
    assert "company.md" in in_group
    for hidden in ("team.md", "30 vacation", "draft.md", "99 vacation"):
        assert hidden not in in_group


async def test_a_private_document_answers_only_its_owner_in_their_personal_chat(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await _bot(make_teams_bot)

    await bot.post(personal_message(QUESTION, service_url=fake.service_url, user_aad=USER_AAD))
    mine = _last_answer(fake)
    await bot.post(personal_message(QUESTION, service_url=fake.service_url, user_aad=OTHER_AAD))
    theirs = _last_answer(fake)

    assert "draft.md" in mine
    assert "draft.md" not in theirs and "99 vacation" not in theirs and "team.md" not in theirs


async def test_an_admins_docs_in_a_channel_name_only_what_the_channel_may_see(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    """Teams has no reply visible to the asker alone: an admin's `docs` in a channel is read by the
    whole channel, so it lists what the channel may see; everything only in the admin's personal chat."""
    bot = await make_teams_bot(admin_user_ids=[USER_AAD])
    engine = bot.engine
    await engine.ingest(KB, "company.md", policy("the company", 25))
    await engine.ingest(KB, "team.md", policy("the channel's team", 30), scope=channel_scope(CHANNEL))
    await engine.ingest(
        KB, "theirs.md", policy("their draft", 77), uploader=OTHER_AAD, scope=private_scope(OTHER_AAD)
    )
    await engine.ingest(KB, "elsewhere.md", policy("another team", 40), scope=channel_scope("19:x@thread.v2"))

    await bot.post(channel_mention("docs", service_url=fake.service_url))
    in_channel = _last_answer(fake)
    await bot.post(personal_message("docs", service_url=fake.service_url))
    in_private = _last_answer(fake)

    assert "company.md" in in_channel and "team.md" in in_channel
    for hidden in ("theirs.md", OTHER_AAD, "elsewhere.md"):
        assert hidden not in in_channel
    for name in ("company.md", "team.md", "theirs.md", "elsewhere.md"):
        assert name in in_private


async def test_an_upload_never_names_or_confirms_a_document_the_uploader_may_not_see(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    """Someone else's private document of the same name (or one that reads alike): the refusal says
    the name is taken, not whose document it is, what it is called or that it holds the same bytes."""
    bot = await make_teams_bot()
    secret = policy("their salary review", 77)
    await bot.engine.ingest(KB, "salary.md", secret, uploader=OTHER_AAD, scope=private_scope(OTHER_AAD))

    replies = []
    for name, data in [
        ("salary.md", b"# Mine\n\nSomething else.\n"),
        ("salary.md", secret),
        ("Salary.md", secret),
    ]:
        await bot.post(personal_file_upload(name, fake.add_file(name, data), service_url=fake.service_url))
        replies.append(str(fake.activities(type="message")[-1].text))

    for reply in replies:
        assert OTHER_AAD not in reply and "uploaded by" not in reply and "belongs to" not in reply
        assert "unchanged" not in reply and "another name" in reply
    assert "salary.md" not in replies[2]  # the look-alike's reply names only the file sent
    (stored,) = await bot.engine.documents(KB)
    assert stored.uploader == OTHER_AAD and stored.sha256 == hashlib.sha256(secret).hexdigest()
