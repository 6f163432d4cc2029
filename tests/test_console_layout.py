"""The console's top status line on an 80 x 24 terminal (Textual pilot)."""

from __future__ import annotations

import pytest

pytest.importorskip("textual")

from test_console_review import T0, Clock, S, StepWriter, _run, _until  # noqa: E402

from demine.console import Follower  # noqa: E402
from demine.console.app import ConsoleApp  # noqa: E402
from demine.control import ControlClient  # noqa: E402


def _top_line(app: ConsoleApp) -> str:
    """The top line as drawn on the screen (cut to the terminal's width)."""
    return app.query_one("#top").render_line(0).text.rstrip()


@pytest.mark.parametrize("fix", [4, 6], ids=["rtk-fixed", "dead-reckoning"])
def test_marks_stay_on_the_top_line_at_80_columns_with_no_recorder_gps_and_position(
        tmp_path, fix):
    """NO RECORDER, the GPS state and a position on an 80-column terminal: the
    line ran past the edge and "marks N" was cut off. Lower-priority items
    (the file name, its size, the HDOP, the duration) give way first."""
    path = tmp_path / "lane-north-field-7.h5"
    w = StepWriter(path, streams=("emi", "gps"))
    follower = Follower(path, clock=Clock(T0 + S), stale_after=1e9, position_stale_s=1e9)
    # a control channel no recorder listens on: status is refused -> NO RECORDER
    app = ConsoleApp(follower, control=ControlClient(str(tmp_path / "none.sock"), timeout=30.0),
                     refresh_hz=10, status_interval=0.1)
    try:
        w("frames('emi', T0, 100, 1000, x=-123.45, y=1234.56)",
          f"frames('gps', T0, 10, 10, x=-123.45, y=1234.56, fix={fix})")

        async def scenario(pilot):
            await _until(pilot, lambda: follower.is_open and follower.gps
                         and app.recorder_answers is False, 30, "the GPS and NO RECORDER")
            await pilot.pause(0.3)
            top = _top_line(app)
            assert top.startswith(" DEMINE  NO RECORDER "), top
            assert "GPS " in top and "x -123.45 y 1234.56" in top, top
            assert "marks 0" in top, top
            assert len(top) <= 80

        _run(app, scenario, size=(80, 24))
        w.close()
    finally:
        w.kill()
        follower.close()


def test_the_whole_top_line_shows_on_a_wide_terminal(tmp_path):
    """Nothing is dropped when there is room: duration, size, HDOP, file name."""
    path = tmp_path / "lane.h5"
    w = StepWriter(path, streams=("emi", "gps"))
    follower = Follower(path, clock=Clock(T0 + S), stale_after=1e9, position_stale_s=1e9)
    app = ConsoleApp(follower, control=ControlClient(str(tmp_path / "none.sock"), timeout=30.0),
                     refresh_hz=10, status_interval=0.1)
    try:
        w("frames('emi', T0, 100, 1000, x=1.5, y=2.5)", "frames('gps', T0, 10, 10, x=1.5, y=2.5)")

        async def scenario(pilot):
            await _until(pilot, lambda: follower.is_open and follower.gps
                         and app.recorder_answers is False, 30, "the GPS and NO RECORDER")
            await pilot.pause(0.3)
            top = _top_line(app)
            for part in (" NO RECORDER ", "00:00:00", " MB ", "GPS RTK fixed", "hdop 0.7",
                         "x 1.50 y 2.50", "marks 0", "lane.h5"):
                assert part in top, (part, top)

        _run(app, scenario, size=(160, 24))
        w.close()
    finally:
        w.kill()
        follower.close()
