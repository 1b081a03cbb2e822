"""Markdown → mrkdwn, splitting under Slack's limits, and the shape of rendered replies."""

from __future__ import annotations

from bot.core.model import IngestProgress, PartialAnswer, Reply
from bot.slack.mrkdwn import SECTION_LIMIT, split, to_mrkdwn
from bot.slack.render import render_reply, render_update, status_text
from rag.types import Citation


def test_commonmark_from_a_model_becomes_mrkdwn() -> None:
    md = "# Rotating **certificates**\n\n- Open **Keychain**\n* Delete ~~the old~~ one\n> keep it safe\n---"

    assert (
        to_mrkdwn(md)
        == "*Rotating certificates*\n\n• Open *Keychain*\n• Delete ~the old~ one\n> keep it safe\n──────────"
    )


def test_links_show_their_target_and_special_characters_are_escaped() -> None:
    md = "See [the guide](https://x.com/a?b=1&c=2) & <https://y.com> if a < b > c"

    assert (
        to_mrkdwn(md)
        == "See the guide (<https://x.com/a?b=1&amp;c=2>) &amp; <https://y.com> if a &lt; b &gt; c"
    )


def test_code_is_left_alone_apart_from_escaping() -> None:
    md = "Run `a **b** < c` then:\n```python\nif x < 1:\n    print('**no**')\n```"

    assert to_mrkdwn(md) == "Run `a **b** &lt; c` then:\n```\nif x &lt; 1:\n    print('**no**')\n```"


def test_the_cores_slack_style_emphasis_is_kept() -> None:
    assert (
        to_mrkdwn("✅ Added *vpn.md*: 3 passages. _Reading…_") == "✅ Added *vpn.md*: 3 passages. _Reading…_"
    )


def test_splitting_respects_the_limit_paragraphs_code_blocks_and_links() -> None:
    link = "<https://example.com/a/very/long/path|a link with words>"
    text = "\n\n".join(f"Paragraph {n}: " + "word " * 80 + link for n in range(40))
    text += "\n\n```\n" + "code line\n" * 600 + "```"

    pieces = split(text, SECTION_LIMIT)

    assert len(pieces) > 5
    assert all(len(p) <= SECTION_LIMIT for p in pieces)
    assert all(p.count("```") % 2 == 0 for p in pieces)  # every piece's code block is closed
    assert all(p.count("<") == p.count(">") for p in pieces)  # no link cut in two
    assert "".join(pieces).count("code line") == 600


def test_a_short_reply_is_one_plain_message_and_an_answer_carries_sources_and_buttons() -> None:
    (info,) = render_reply(Reply("Deleted *vpn.md*."))
    assert info.text == "Deleted *vpn.md*." and info.blocks == []

    answer = Reply(
        "Open **Keychain** [1].",
        kind="answer",
        citations=(Citation(1, "vpn.md", "p. 3, Certificates", "https://x.slack.com/files/U1/F1/vpn.md"),),
        feedback=True,
    )
    (message,) = render_reply(answer, feedback_value="Ev1")
    section, sources, actions = message.blocks
    assert message.text == section["text"]["text"] == "Open *Keychain* [1]."
    assert (
        sources["text"]["text"]
        == "*Sources*\n[1] <https://x.slack.com/files/U1/F1/vpn.md|vpn.md> — p. 3, Certificates"
    )
    (votes,) = actions["elements"]
    assert actions["type"] == "context_actions" and votes["type"] == "feedback_buttons"
    assert [votes[b]["value"] for b in ("positive_button", "negative_button")] == ["up:Ev1", "down:Ev1"]


def test_a_streaming_answer_shows_its_first_piece_with_the_cursor_outside_the_markup() -> None:
    assert render_update(PartialAnswer("## Ste")) == "*Ste* ▌"
    assert render_update(PartialAnswer("word " * 2000)).endswith(" … ▌")
    assert len(render_update(PartialAnswer("word " * 2000))) <= SECTION_LIMIT + 4
    assert render_update(IngestProgress("vpn.md", 3, 10)) == "_Reading vpn.md… 30% (3/10 passages)_"


def test_the_assistant_status_reads_after_the_apps_name() -> None:
    assert status_text("_Searching your documents…_") == "is searching your documents…"
    assert status_text("_Reading vpn.md, a.md…_") == "is reading vpn.md, a.md…"
