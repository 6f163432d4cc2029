"""The command-line reference (``docs/cli.md``), made from the parsers themselves.

``python -m demine.cli._reference > docs/cli.md`` rewrites the page; a test
checks that the page in the tree is what the parsers give, so an option added
to a command cannot stay undocumented.  The text is laid out here, not by
argparse's help formatter, so that it does not depend on the terminal's width
or on the Python version.
"""

from __future__ import annotations

import argparse
import sys

HEADER = """\
# Command-line reference

Every `demine` command and option, made from the commands' own parsers
(`python -m demine.cli._reference > docs/cli.md`; a test checks that this page
is current). `demine COMMAND --help` prints the same. How the commands fit
together is in the [README](../README.md) and the pages it links.

"""


def _sub_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]


def _text(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = action.help or ""
    if "%" in text:
        params = {**vars(action), "prog": parser.prog}
        if isinstance(action.choices, dict | list | tuple):
            params["choices"] = ", ".join(map(str, action.choices))
        text = text % params
    return " ".join(text.split())


def _option(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    if action.nargs == 0:
        return ", ".join(f"`{o}`" for o in action.option_strings)
    meta = action.metavar
    if meta is None:
        meta = ("{" + ",".join(map(str, action.choices)) + "}" if action.choices
                else action.dest.upper())
    if isinstance(meta, tuple):
        meta = " ".join(meta)
    return ", ".join(f"`{o} {meta}`" for o in action.option_strings)


def _command(parser: argparse.ArgumentParser, title: str, level: int,
             helps: dict[str, str], out: list[str]) -> None:
    out.append(f"{'#' * level} `{title}`\n")
    desc = " ".join((parser.description or helps.get(title, "")).split())
    if desc:
        out.append(desc + "\n")
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.help is argparse.SUPPRESS:
            continue
        text = _text(parser, action)
        rows.append(f"- {_option(action)}: {text}" if text else f"- {_option(action)}")
    if rows:
        out.append("\n".join(rows) + "\n")
    if parser.epilog:
        out.append(" ".join(parser.epilog.split()) + "\n")
    for sub in _sub_actions(parser):
        helps_sub = {c.dest: c.help or "" for c in sub._choices_actions}
        for name, child in sub.choices.items():
            _command(child, f"{title} {name}", level + 1,
                     {f"{title} {k}": v for k, v in helps_sub.items()}, out)


def markdown() -> str:
    """The reference page as Markdown."""
    from . import build_parser

    parser = build_parser()
    out = [HEADER]
    for sub in _sub_actions(parser):
        helps = {f"demine {c.dest}": c.help or "" for c in sub._choices_actions}
        for name, child in sub.choices.items():
            _command(child, f"demine {name}", 2, helps, out)
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description="Print docs/cli.md.").parse_args(argv)
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
