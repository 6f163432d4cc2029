"""The field console: live signals, radar image and alarms, following a recording.

``demine console FILE`` follows a recording another process writes;
``demine console --device ... --out FILE`` and ``demine console --simulate SCENE``
start a recorder process (``demine record --control ...``) and follow its file.
The console never writes the file: marks and commands go to the recorder over
the control channel (:mod:`demine.control`), so a console crash never stops
a recording.

:class:`~demine.console.follow.Follower` is the data model (no display
dependency); :class:`~demine.console.app.ConsoleApp` is the Textual app
(``pip install demine[console]``).
"""

from __future__ import annotations

from .follow import Follower, StreamStatus

__all__ = ["ConsoleApp", "Follower", "StreamStatus", "start_recorder"]


def __getattr__(name: str):  # lazy: Textual is an optional dependency
    if name == "ConsoleApp":
        from .app import ConsoleApp

        return ConsoleApp
    if name == "start_recorder":
        from .launch import start_recorder

        return start_recorder
    raise AttributeError(f"module 'demine.console' has no attribute {name!r}")
