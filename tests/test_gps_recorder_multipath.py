"""The live recorder rejects a lone multipath fix as the batch interpolation
does (real recorder, pseudo-terminals, HDF5 file)."""

from __future__ import annotations

import numpy as np
from test_recorder_gps import EMI_RATE, SPEED, _record

from demine.positions import interpolate_positions


def test_a_lone_jump_moves_no_reading_live_and_live_equals_batch(tmp_path):
    # fix 12 (1.2 s in) 5 m off across, its neighbours on the line y = 1
    r = _record(tmp_path / "jump.h5", seconds=3.0, y=lambda k: 6.0 if k == 12 else 1.0,
                recorders=(recs := []))
    with r:
        e, g = r.streams["emi"], r.streams["gps"]
        ok = np.isfinite(e.x)
        assert ok.sum() > 0.6 * len(e)
        assert float(np.abs(e.y[ok] - 1.0).max()) < 0.05
        assert float(np.abs(e.x[ok] - SPEED * e.sequence[ok] / EMI_RATE).max()) < 0.1
        # the GPS stream keeps what the receiver sent
        assert int((np.abs(g.y - 6.0) < 0.01).sum()) == 1
        # batch, from the recorded track, gives the live positions
        track = np.c_[g.x, g.y, g.z]
        want = interpolate_positions(g.time, track, e.time, max_gap_s=1.0)
        np.testing.assert_array_equal(np.c_[e.x, e.y, e.z][ok], want[ok])
    assert "gps: 1 isolated GPS fix rejected" in " ".join(recs[0].processing_notes)


def test_a_jump_then_a_silent_receiver_leaves_no_reading_unplaced(tmp_path):
    """Fix 12 jumps 2 m across (held until the next fix decides it) and the
    receiver then sends nothing for 1.5 s: the readings between fixes 11 and 12
    waited for a decision that came only after they had been given up on (0 of
    about 50 placed live, all in batch). The held fix is now kept once its
    judging window is past, and live equals batch."""
    r = _record(tmp_path / "quiet.h5", seconds=4.0, y=lambda k: 1.0 if k < 12 else 3.0,
                missing=frozenset(range(13, 28)))
    with r:
        e, g = r.streams["emi"], r.streams["gps"]
        sel = (e.time > g.time[11]) & (e.time < g.time[12])
        assert sel.sum() > 20
        want = interpolate_positions(g.time, np.c_[g.x, g.y, g.z], e.time, max_gap_s=1.0)
        assert np.isfinite(want[sel, 0]).all()
        assert np.isfinite(e.x[sel]).all()
        np.testing.assert_array_equal(np.c_[e.x, e.y, e.z][sel], want[sel])
