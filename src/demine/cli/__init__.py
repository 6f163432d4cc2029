"""The ``demine`` command line.

Each sub-command lives in its own module of this package and exposes two
functions: ``register(subparsers)`` adds its parser, ``run(args) -> int`` does
the work.  Heavy imports belong inside ``run`` so that ``demine --help`` stays
fast.  Errors that demine raises on purpose (:class:`demine.DemineError`) and
operating-system errors on the files named become one line on stderr and exit
status 2, never a traceback, as does an optional dependency that is not installed
(the extra to install named); warnings become one line on stderr too.  Options
a sub-command does not know are reported with that sub-command's usage.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import DemineError

#: Sub-command modules, in the order ``demine --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "demo", "info", "record", "calibrate", "process", "detect", "evaluate", "export",
    "import_", "simulate", "train", "batch", "report",
    "drivers", "console",
)

#: Top-level modules of the optional dependencies, by the extra that installs them
#: (``pyproject.toml``): a sub-command that needs one that is missing says so.
OPTIONAL_MODULES: dict[str, str] = {
    "dask": "campaign", "distributed": "campaign", "pyarrow": "campaign",
    "pyproj": "campaign", "matplotlib": "plot", "textual": "console",
    "xarray": "xarray", "h5netcdf": "xarray",
}

EXIT_STATUS = (
    "Exit status: 0 success; 1 the work ran but something failed (a file of a batch, a "
    "probe that decoded no frame, a recorder or simulator that the console started), or an "
    "unexpected internal error (with a traceback); 2 usage or input error; 130 interrupted "
    "(Ctrl-C); 141 the reader of the output went away (e.g. piped into head)."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="demine",
        description="Mine-action sensor research toolkit: record, process, detect, "
        "classify and evaluate metal-detector and radar data.",
        epilog=EXIT_STATUS,
    )
    parser.add_argument("--version", action="version", version=f"demine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``demine`` console script; returns the exit status."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # reported by the sub-command's own parser (its usage, "demine CMD: error:"),
        # not by the top-level one, which knows none of the sub-command's options
        _chosen_parser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help()
        return 2
    package = str(Path(__file__).resolve().parents[1])
    shown = warnings.showwarning

    def one_line(message: Warning | str, category: type[Warning], filename: str,
                 lineno: int, file: Any = None, line: str | None = None) -> None:
        # demine's own warnings are for the user: one line naming the command,
        # as errors are; other libraries' keep their usual form
        if str(Path(filename).resolve()).startswith(package):
            print(f"demine {args.command}: warning: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line
            status = int(args.run(args) or 0)
            sys.stdout.flush()  # (here, where a closed pipe is caught below)
            return status
    except BrokenPipeError as exc:
        if _stdout_gone():
            # the reader of the output went away (`demine info lane.h5 | head -1`):
            # stop quietly, as peer tools do; nothing more goes to the closed pipe
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141  # (128 + SIGPIPE, as a shell reports it)
        print(f"demine {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except DemineError as exc:
        print(f"demine {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"demine {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        missing = _missing_extra(exc)
        if missing is None:
            raise  # (not an optional dependency: a broken installation or a bug)
        print(f"demine {args.command}: error: {missing}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"demine {args.command}: interrupted", file=sys.stderr)
        return 130


def _chosen_parser(parser: argparse.ArgumentParser,
                   args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost (sub-)parser that ``args`` went through (``demine calibrate null``'s
    for ``demine calibrate null ...``), ``parser`` itself when no command was given."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, subs[0].dest, None) if subs else None
        if name is None:
            return parser
        parser = subs[0].choices[name]


def _missing_extra(exc: ImportError) -> str | None:
    """The message for an optional dependency that is not installed, or None when
    ``exc`` is about something else.

    demine's own messages for a missing extra (they name the ``pip install``) are
    kept; a bare ``ModuleNotFoundError`` of one of :data:`OPTIONAL_MODULES` gets one.
    """
    if "pip install" in str(exc):
        return str(exc)
    root = (exc.name or "").partition(".")[0]
    if isinstance(exc, ModuleNotFoundError) and root in OPTIONAL_MODULES:
        return (f"{root} is not installed (an optional dependency): "
                f"pip install 'demine[{OPTIONAL_MODULES[root]}]'")
    return None


def _stdout_gone() -> bool:
    """Whether standard output is a pipe whose reader has closed it."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poll.poll(0))
    except (AttributeError, OSError, ValueError):  # (no poll, or no stdout)
        return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
