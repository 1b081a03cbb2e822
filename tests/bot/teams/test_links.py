"""Teams: a link written in a document is shown with its real target, never as Markdown or HTML link
text that hides it, whether the answer quotes the passage (no model) or the model repeats the link.

The document is sent to the bot in personal chat as a file, the question is asked as a channel
mention, and the assertions read the answer as posted to the (fake) Bot Connector.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from rag.answer import DEFAULT_GROQ_MODEL, ExtractiveAnswerer, GroqAnswerer
from tests.bot.teams.activities import channel_mention, personal_file_upload
from tests.bot.teams.conftest import TeamsBot, TeamsBotFactory
from tests.fakes.bot_connector import FakeBotConnector
from tests.fakes.groq_server import FakeGroq

TARGET = "https://evil.example.net/collect?who=you"
HTML_TARGET = "https://evil.example.net/html"
PHISHING = (
    b"# Password reset\n\n"
    b"To reset your password, sign in at [the IT portal](https://evil.example.net/collect?who=you) or "
    b'<a href="https://evil.example.net/html">the backup portal</a> with your badge number.\n'
)
QUESTION = "How do I reset my password?"
# Markdown link text over a target: [text](url), [text][ref] with its [ref]: url, and HTML anchors.
MARKDOWN_LINK = re.compile(r"(?<!\\)\[([^\]]*)\]\(([^)]*)\)")
DEFINITION = re.compile(r"^ {0,3}\[[^\]\n]+\]:", re.M)
ANCHOR = re.compile(r"<a\b", re.I)


@pytest.fixture
async def groq() -> AsyncIterator[FakeGroq]:
    async with FakeGroq() as fake:
        yield fake


async def _upload_and_ask(bot: TeamsBot, fake: FakeBotConnector) -> str:
    url = fake.add_file("reset.md", PHISHING)
    await bot.post(personal_file_upload("reset.md", url, service_url=fake.service_url))
    assert fake.activities(type="message")[-1].text.startswith("✅ Added")

    await bot.post(channel_mention(QUESTION, service_url=fake.service_url))
    return str(fake.activities(type="message")[-1].text)  # as it reads now: the last post or edit


def _assert_no_disguised_link(shown: str) -> None:
    assert [(text, url) for text, url in MARKDOWN_LINK.findall(shown) if text != url] == []
    assert DEFINITION.findall(shown) == []
    assert ANCHOR.findall(shown) == []


async def test_a_quoted_passage_shows_the_targets_of_its_links(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector
) -> None:
    bot = await make_teams_bot()

    shown = await _upload_and_ask(bot, fake)

    assert "To reset your password" in shown  # the passage is quoted (no model configured)
    _assert_no_disguised_link(shown)
    assert f"the IT portal ({TARGET})" in shown
    assert f"the backup portal ({HTML_TARGET})" in shown


async def test_links_the_model_writes_show_their_targets(
    make_teams_bot: TeamsBotFactory, fake: FakeBotConnector, groq: FakeGroq
) -> None:
    answerer = GroqAnswerer(
        api_key="test-key",
        model=DEFAULT_GROQ_MODEL,
        base_url=groq.base_url,
        timeout_s=10,
        max_retries=0,
        fallback=ExtractiveAnswerer(reason="unavailable"),
    )
    bot = await make_teams_bot(answerer=answerer)
    groq.enqueue_answer(
        f"Sign in at [the IT portal]({TARGET}) [1], [the [official] desk]({TARGET}), "
        f'<A HREF="{HTML_TARGET}">the backup portal</A> or [the help desk][desk] [1].\n\n'
        f"[desk]: {TARGET}"
    )

    shown = await _upload_and_ask(bot, fake)

    _assert_no_disguised_link(shown)
    assert f"the IT portal ({TARGET})" in shown
    assert f"the backup portal ({HTML_TARGET})" in shown
    assert TARGET in shown.rsplit("desk", 1)[-1]  # the reference's target is shown where it was defined
