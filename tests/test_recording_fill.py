"""Columns an append leaves out (positions not known yet) are not written: their
extent grows and HDF5's NaN fill value stands for them until they are filled in.

Asserted on the file itself, as a SWMR reader sees it, and on HDF5's chunk
allocation (nothing written means no chunk allocated)."""

from __future__ import annotations

import numpy as np
import pytest

from demine.recording import Recording, RecordingWriter


def _chunks(path, stream, column):
    import h5py

    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        return f["streams"][stream][column].id.get_num_chunks()


def _stream(w):
    return w.add_stream("emi", "emi", n_channels=4, geo=True,
                        fields={"status": "uint16", "gain": "float32"})


def test_omitted_positions_read_as_nan_until_filled_in(tmp_path):
    path = tmp_path / "a.h5"
    w = RecordingWriter(path, autoflush=False, flush_on_append=False)
    s = _stream(w)
    w.start()
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(30, 4)).astype(np.float32)
    t = np.arange(30, dtype=np.int64) * 10**6
    for k in range(3):  # three passes, positions not known yet
        s.append(samples[10 * k:10 * k + 10], time=t[10 * k:10 * k + 10],
                 status=np.zeros(10, np.uint16))
        w.flush()
    with Recording(path) as r:
        st = r.streams["emi"]
        assert len(st) == 30
        np.testing.assert_array_equal(st.samples, samples)
        for c in ("x", "y", "z", "lon", "lat", "gain"):
            assert np.isnan(st[c]).all() and st[c].shape == (30,)
        assert st["gain"].dtype == np.float32
        assert (st.sequence == -1).all()  # an integer fill is written, not HDF5's
    for c in ("x", "lon"):
        assert _chunks(path, "emi", c) == 0
    assert _chunks(path, "emi", "time") == 1
    # the fix after them arrived: filled in place
    x = np.linspace(0.0, 2.9, 30)
    s.update(0, x=x, y=-x, z=np.full(30, 0.1), lon=x + 10, lat=x + 50)
    w.close()
    with Recording(path) as r:
        st = r.streams["emi"]
        np.testing.assert_array_equal(st.x, x)
        np.testing.assert_array_equal(st.y, -x)
        np.testing.assert_array_equal(st["lat"], x + 50)


def test_a_column_given_by_any_pending_append_is_written(tmp_path):
    """Appends with and without positions in one flush, and positions patched
    into rows still buffered: every value lands where it belongs."""
    path = tmp_path / "a.h5"
    w = RecordingWriter(path, autoflush=False, flush_on_append=False)
    s = _stream(w)
    w.start()
    t = np.arange(40, dtype=np.int64)
    z = np.zeros((10, 4), np.float32)
    s.append(z, time=t[:10], x=np.arange(10.0))
    s.append(z, time=t[10:20])  # no positions
    s.append(z, time=t[20:30])  # no positions, patched before the flush
    # (rows 10..19 and 20..29 started as the same NaN column: one is patched)
    s.update(20, x=np.full(10, 7.0), y=np.full(10, 8.0), gain=np.ones(10, np.float32))
    w.flush()
    s.append(z, time=t[30:])  # no positions, flushed alone
    w.close()
    with Recording(path) as r:
        st = r.streams["emi"]
        assert len(st) == 40
        np.testing.assert_array_equal(st.x[:10], np.arange(10.0))
        assert np.isnan(st.x[10:20]).all() and np.isnan(st.x[30:]).all()
        np.testing.assert_array_equal(st.x[20:30], 7.0)
        np.testing.assert_array_equal(st.y[20:30], 8.0)
        assert np.isnan(st.y[:20]).all()
        assert np.isnan(st["lon"]).all()
        np.testing.assert_array_equal(st["status"], 0)
        np.testing.assert_array_equal(st["gain"][20:30], 1.0)
        assert np.isnan(st["gain"][:20]).all() and np.isnan(st["gain"][30:]).all()


@pytest.mark.parametrize("column", ["sequence", "status", "time"])
def test_only_nan_fills_are_hdf5_fill_values(tmp_path, column):
    """An HDF5 fill value reads as netCDF's _FillValue in generic readers, which
    mask it: integer columns (sequence -1, status 0) must not carry one."""
    import h5py

    path = tmp_path / "a.h5"
    with RecordingWriter(path) as w:
        _stream(w).append(np.zeros((2, 4), np.float32), time=[1, 2])
    with h5py.File(path, "r") as f:
        ds = f["streams"]["emi"]
        user = h5py.h5d.FILL_VALUE_USER_DEFINED
        assert ds[column].id.get_create_plist().fill_value_defined() != user
        assert ds["x"].id.get_create_plist().fill_value_defined() == user
        assert np.isnan(ds["x"].fillvalue)
