"""What counts as a command, and what is a question that merely starts like one."""

from __future__ import annotations

import pytest

from bot.core.commands import Command, name_candidates, parse_command


@pytest.mark.parametrize("word", ["help", "docs", "stats", "HELP", "  docs  "])
def test_a_bare_command_word_is_that_command(word: str) -> None:
    assert parse_command(word) == Command(word.strip().lower())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/docs", Command("docs")),
        ("/threadwise docs", Command("docs")),
        ("/threadwise stats", Command("stats")),
        ("/threadwise", Command("help")),  # the slash command on its own shows help
        ("/threadwise what is our VPN?", Command("help")),  # not a command: help rather than silence
        ("/forget vpn-guide.pdf", Command("forget", "vpn-guide.pdf")),
        ("/threadwise forget vpn-guide.pdf", Command("forget", "vpn-guide.pdf")),
    ],
)
def test_slash_forms(text: str, expected: Command) -> None:
    assert parse_command(text) == expected


def test_forget_takes_the_document_name_as_written_and_tries_it_without_quotes_after() -> None:
    assert parse_command("forget Onboarding Guide.docx") == Command("forget", "Onboarding Guide.docx")
    assert parse_command("forget `vpn.md`") == Command("forget", "`vpn.md`")
    assert parse_command("forget _draft_.md") == Command("forget", "_draft_.md")
    assert name_candidates("`vpn.md`") == ["`vpn.md`", "vpn.md"]
    assert name_candidates('*"vpn.md"*') == ['*"vpn.md"*', '"vpn.md"', "vpn.md"]
    assert name_candidates("_draft_.md") == ["_draft_.md", "draft_.md"]
    assert name_candidates("“my notes.md”") == ["“my notes.md”", "my notes.md"]


def test_forget_without_a_name_is_still_forget_with_no_argument() -> None:
    # The handler answers it with the usage line rather than treating it as a question.
    assert parse_command("forget") == Command("forget", "")
    assert parse_command("/forget   ") == Command("forget", "")


@pytest.mark.parametrize(
    "question",
    [
        "help me find the VPN guide",
        "docs about the holiday policy?",
        "stats for Q3 revenue",
        "list the steps to reset my password",
        "How do I rotate the VPN certificate?",
        "helpdesk phone number",
    ],
)
def test_questions_that_start_with_a_command_word_are_questions(question: str) -> None:
    assert parse_command(question) is None


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_text_is_no_command(text: str) -> None:
    assert parse_command(text) is None


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("list", Command("docs")),
        ("documents", Command("docs")),
        ("/list", Command("docs")),
        ("?", Command("help")),
        ("delete old.pdf", Command("forget", "old.pdf")),
        ("/threadwise delete old.pdf", Command("forget", "old.pdf")),
    ],
)
def test_aliases(alias: str, expected: Command) -> None:
    assert parse_command(alias) == expected
