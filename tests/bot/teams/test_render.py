"""Our Markdown in Teams' terms, long replies split, the sources card."""

from __future__ import annotations

from bot.core import text
from bot.teams.render import sources_card, split_message, teams_markdown
from rag.types import Citation


def test_single_star_bold_becomes_teams_bold_and_lines_become_paragraphs() -> None:
    md = "*2 documents* in the KB:\n• *vpn.md* — 3 passages, _by U1_\n\n**already bold** 2 * 3 * 4"

    assert teams_markdown(md) == (
        "**2 documents** in the KB:\n\n• **vpn.md** — 3 passages, _by U1_\n\n**already bold** 2 * 3 * 4"
    )


def test_split_prefers_paragraph_then_line_then_word_ends() -> None:
    paragraphs = "\n\n".join(["a" * 40, "b" * 40, "c" * 40])
    assert split_message(paragraphs, 90) == ["a" * 40 + "\n\n" + "b" * 40, "c" * 40]

    words = " ".join(["word"] * 50)
    parts = split_message(words, 60)
    assert all(len(p) <= 60 for p in parts)
    assert " ".join(parts).split() == words.split()

    unbroken = "x" * 250
    assert split_message(unbroken, 100) == ["x" * 100, "x" * 100, "x" * 50]
    assert split_message("short", 100) == ["short"]
    assert split_message("", 100) == [""]


def test_sources_card_lists_file_and_place_with_links_and_escapes_names() -> None:
    citations = (
        Citation(1, "vpn-guide.pdf", "p. 3, Certificates", "https://contoso.sharepoint.com/vpn-guide.pdf"),
        Citation(2, "notes_*draft*.md", "", None),
    )

    card = sources_card(citations, ref="17", feedback=False)

    assert card is not None
    content = card["content"]
    assert [b["text"] for b in content["body"]] == [
        text.SOURCES_TITLE,
        "[1] [vpn-guide.pdf](https://contoso.sharepoint.com/vpn-guide.pdf) — p. 3, Certificates",
        r"[2] **notes\_\*draft\*.md**",
    ]
    assert "actions" not in content


def test_no_card_without_sources_or_feedback_and_buttons_alone_when_only_feedback() -> None:
    assert sources_card((), ref="17", feedback=False) is None

    card = sources_card((), ref="17", feedback=True)

    assert card is not None
    assert card["content"]["body"] == []
    assert [a["data"]["vote"] for a in card["content"]["actions"]] == ["up", "down"]
