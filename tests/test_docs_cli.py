"""docs/cli.md is the command-line reference made from the parsers: an option
added to a command cannot stay undocumented (the session-28 docs audit found
twenty-odd options that only --help named)."""

from __future__ import annotations

from pathlib import Path

from demine.cli import COMMANDS, _reference, build_parser

PAGE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_the_reference_page_is_what_the_parsers_give():
    assert PAGE.read_text(encoding="utf-8") == _reference.markdown(), (
        "docs/cli.md is out of date: python -m demine.cli._reference > docs/cli.md")


def test_every_command_and_option_is_on_the_page():
    text = _reference.markdown()
    parser = build_parser()
    (sub,) = _reference._sub_actions(parser)
    assert len(sub.choices) == len(COMMANDS)
    for name, child in sub.choices.items():
        assert f"## `demine {name}`" in text, name
        for action in child._actions:
            for opt in action.option_strings:
                if opt not in ("-h", "--help"):
                    assert f"`{opt}" in text, (name, opt)
