"""From an outside audit of the Python API (session 28), as a lab script uses it:
the writer keeps what was appended, whatever the script does with its arrays
afterwards, and a refused call leaves the file as it was."""

from __future__ import annotations

import numpy as np
import pytest

from demine.recording import Recording, RecordingWriter

GATES = [1e-5, 3e-5, 1e-4, 3e-4]


@pytest.mark.parametrize("flush_interval", [60.0, 0.001])
def test_a_reused_acquisition_buffer_is_recorded_block_by_block(tmp_path, flush_interval):
    # A DAQ loop fills one buffer in place and appends it; the writer had kept
    # a reference until its flush, so every buffered block became the last.
    path = tmp_path / "r.h5"
    buf = np.empty((10, 4), dtype="float32")
    tbuf = np.empty(10, dtype="int64")
    xbuf = np.empty(10, dtype="float64")
    with RecordingWriter(path, flush_interval=flush_interval) as w:
        s = w.add_stream("emi", "emi", gate_times=GATES)
        for k in range(5):
            buf[:] = k
            tbuf[:] = np.arange(10) + 10 * k
            xbuf[:] = k
            s.append(buf, time=tbuf, x=xbuf)
    with Recording(path) as rec:
        e = rec.streams["emi"]
        np.testing.assert_array_equal(e.samples[::10, 0], np.arange(5))
        np.testing.assert_array_equal(e.time, np.arange(50))
        np.testing.assert_array_equal(e.x[::10], np.arange(5))


def test_update_of_buffered_rows_leaves_the_callers_arrays_alone(tmp_path):
    path = tmp_path / "u.h5"
    x = np.zeros(4)
    ro = np.broadcast_to(np.float64(0.0), (4,))   # read-only, as np.load(mmap_mode="r")
    with RecordingWriter(path, flush_interval=60) as w:
        s = w.add_stream("emi", "emi", gate_times=GATES)
        s.append(np.zeros((4, 4), "f4"), time=np.arange(4), x=x, y=ro)
        s.update(2, x=[5.0, 6.0], y=[5.0, 6.0])
    np.testing.assert_array_equal(x, 0.0)
    with Recording(path) as rec:
        np.testing.assert_array_equal(rec.streams["emi"].x, [0, 0, 5, 6])
        np.testing.assert_array_equal(rec.streams["emi"].y, [0, 0, 5, 6])
