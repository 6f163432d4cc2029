"""Writing outputs without losing what was there (shared by the commands)."""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from .errors import ConfigError

__all__ = ["refuse_special_output", "replace_text"]


def replace_text(out: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``out`` through a temporary file in the same directory,
    renamed over it when complete: a failed write (disk full, an error) leaves
    an earlier file of that name as it was, never half-written.  A pipe or a
    device (``-o /dev/stdout``) is written as it is: it cannot be renamed over."""
    # (a lone surrogate from an API caller's label had raised UnicodeEncodeError
    # and left the temporary file behind)
    replace_bytes(out, text.encode("utf-8", errors="replace"))


def replace_bytes(out: str | os.PathLike[str], data: bytes) -> None:
    """:func:`replace_text` for bytes (a model file, gzip-compressed or not)."""
    if Path(out).exists() and not Path(out).is_file() and not Path(out).is_dir():
        with open(out, "wb") as fh:
            fh.write(data)
        return
    target = Path(os.path.realpath(out))  # (through a link: the link stays)
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", str(out))
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
        if target.exists():  # (the file replaced keeps its permissions)
            os.chmod(tmp, target.stat().st_mode & 0o7777)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(out)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def refuse_special_output(path: str | os.PathLike[str]) -> None:
    """Refuse an output that exists and is not a regular file (a device, a
    pipe) where the output is a file renamed into place, as a recording is:
    renaming over it replaces it (run as root, ``--out /dev/null --overwrite``
    had replaced the system's /dev/null).  A text output is written into such
    a file instead (:func:`replace_text`)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise ConfigError(f"{path}: is not a regular file (a device or a pipe): give the "
                          "path of a file to write")
