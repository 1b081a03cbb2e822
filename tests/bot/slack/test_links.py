"""A link written in a document is shown with its real target, never as Slack link text that hides it:
whether the answer quotes the passage (no model) or the model repeats the link. Mentions stay text.

The document goes in as a person would add it (a file in the bot's DM), the question comes in as a
mention, and the assertions read the answer as Slack would show it.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import pytest

from tests.bot.slack import payloads
from tests.bot.slack.conftest import HarnessFactory, SlackHarness, groq_answerer
from tests.fakes.groq_server import FakeGroq

TARGET = "https://evil.example.net/collect?who=you"
PHISHING = (
    b"# Password reset\n\n"
    b"To reset your password, sign in at [the IT portal](https://evil.example.net/collect?who=you) "
    b"or <https://evil.example.net/also|the backup portal> with your badge number.\n"
    b"Problems? Ask <!channel> or <@W999> for help with the password reset.\n"
)
QUESTION = "How do I reset my password?"
# Slack link markup that shows text other than its target: <url|text>.
LABELLED = re.compile(r"<([a-z][a-z0-9+.-]*:[^|>]*)\|([^>]*)>")


@pytest.fixture
async def groq() -> AsyncIterator[FakeGroq]:
    async with FakeGroq() as fake:
        yield fake


async def _upload_and_ask(slack: SlackHarness) -> str:
    """The guide sent to the bot's DM, then the question: the answer's text as posted in the thread."""
    upload = payloads.dm_file_share([slack.fake.add_file("reset.md", PHISHING, mimetype="text/markdown")])
    await slack.send(upload)
    await slack.settle()
    (added,) = slack.fake.thread(payloads.DM, upload["event"]["ts"])
    assert added["text"].startswith("✅ Added")

    question = payloads.app_mention(QUESTION)
    await slack.send(question)
    await slack.settle()
    (message,) = slack.fake.thread(payloads.CHANNEL, question["event"]["ts"])
    if "streaming" not in message:  # a streamed answer's text is all Markdown, Sources in its blocks
        assert message["blocks"][0]["text"]["text"] == message["text"]
    return str(message["text"])


def _assert_shown_not_disguised(shown: str) -> None:
    assert LABELLED.findall(shown) == []  # no link text over a different target
    assert f"<{TARGET.replace('&', '&amp;')}>" in shown  # the target itself, as a link
    assert "the IT portal" in shown


async def test_a_quoted_passage_shows_the_target_of_its_link(slack: SlackHarness) -> None:
    shown = await _upload_and_ask(slack)

    assert "To reset your password" in shown  # the passage is quoted (no model configured)
    _assert_shown_not_disguised(shown)
    # What looked like Slack markup in the document stays text: no hidden target, no mention.
    assert "&lt;https://evil.example.net/also|the backup portal&gt;" in shown
    assert "&lt;!channel&gt;" in shown and "&lt;@W999&gt;" in shown
    assert "<!channel>" not in shown and "<@W999>" not in shown


async def test_a_link_the_model_writes_shows_its_target(make_slack: HarnessFactory, groq: FakeGroq) -> None:
    slack = await make_slack(answerer=groq_answerer(groq))
    groq.enqueue_answer(
        f"Sign in at [the IT portal]({TARGET}) [1], or at [https://it.example.com]({TARGET}) <!here>."
    )

    shown = await _upload_and_ask(slack)

    # Streamed as Markdown, which Slack renders itself: the same rule, in Markdown's terms.
    assert "the IT portal (<https://evil.example.net/collect?who=you>)" in shown
    assert "](" not in shown  # no [text](target) left
    assert f"https://it.example.com (<{TARGET}>)" in shown  # a URL as text too
    assert "\\<!here>" in shown  # escaped: shown as text, never a mention


@pytest.mark.parametrize(
    "text", ["portal \u00007\u0000 and", "portal \u00000\u0000 [x](https://a.example) and"]
)
async def test_a_document_with_nul_characters_is_answered_like_any_other(
    slack: SlackHarness, text: str
) -> None:
    """JSON keeps "\\u0000": a passage holding the renderer's own link placeholder once crashed every
    answer quoting it, leaving "Searching your documents…" in the thread for good."""
    body = json.dumps({"password_reset": f"To reset your password, open the IT {text} sign in."}).encode()
    upload = payloads.dm_file_share([slack.fake.add_file("reset.json", body, mimetype="application/json")])
    await slack.send(upload)
    await slack.settle()

    question = payloads.app_mention(QUESTION)
    await slack.send(question)
    await slack.settle()
    (message,) = slack.fake.thread(payloads.CHANNEL, question["event"]["ts"])
    assert "To reset your password" in message["text"] and "\x00" not in message["text"]
