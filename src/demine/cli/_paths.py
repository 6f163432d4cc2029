"""Output paths of the CLI: never over an input or a recording."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ..errors import ConfigError

#: The signature an HDF5 file (a demine recording) starts with.
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def check_text_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (),
                      option: str = "--out") -> None:
    """Refuse to write a text output (CSV, TOML, JSON, GeoJSON) over one of the
    command's inputs or over an existing HDF5 file (a recording, most
    likely): either would destroy data.  Other existing files are replaced,
    as usual for such outputs.  A directory, or a path in a directory that does
    not exist, is refused before any work.

    Raises
    ------
    ConfigError
        Naming the option and the path.
    """
    out = Path(out)
    check_output_place(out, option)
    if not out.exists():
        return
    check_not_input(out, inputs, option)
    if not stat.S_ISREG(os.stat(out).st_mode):
        return   # (/dev/stdout on a pipe: reading it would wait for ever)
    try:
        with open(out, "rb") as fh:
            head = fh.read(len(_HDF5_SIGNATURE))
    except OSError:
        return  # (a directory, unreadable: the write itself reports it)
    if head == _HDF5_SIGNATURE:
        raise ConfigError(f"{option} {out} is an HDF5 file (a recording?): not overwritten; "
                          "give another path, or remove it first")


def check_output_place(out: str | os.PathLike, option: str = "--out") -> None:
    """Refuse, before any work, an output path that is a directory or lies in a
    directory that does not exist (the write had said only "[Errno 2] No such
    file or directory", or named a temporary file, after the work)."""
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"{option} {out} is a directory: give the output file's name")
    if not out.parent.is_dir():
        raise ConfigError(f"{option} {out}: directory {out.parent} does not exist")


def check_not_input(out: str | os.PathLike, inputs: Iterable[str | os.PathLike],
                    option: str = "--out") -> None:
    """Refuse an output path that is one of the inputs (also through a link),
    whatever ``--overwrite`` says: the input would be destroyed while read."""
    out = Path(out)
    if not out.exists():
        return
    for src in inputs:
        try:
            same = os.path.samefile(out, src)
        except OSError:
            continue
        if same:
            raise ConfigError(f"{option} {out} is the input {src}: it would be overwritten; "
                              "give another path")
