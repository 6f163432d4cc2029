"""Write path of the recording as the live recorder drives it: the caller
flushes on its own schedule, columns are written through reused dataspaces
(appends, in-place updates of written and of buffered rows, many flushes),
and the file reads back exactly (real HDF5, SWMR reader in the same process)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from demine.recording import Recording, RecordingWriter


def _writer(path, **kw):
    w = RecordingWriter(path, flush_interval=0.001, autoflush=False, **kw)
    s = w.add_stream("gpr", "gpr", n_channels=8, dtype="int16", geo=True,
                     fields={"status": np.uint16})
    w.start()
    return w, s


def test_caller_flushes_appends_do_not(tmp_path):
    path = tmp_path / "a.h5"
    w, s = _writer(path, flush_on_append=False)
    try:
        assert not w.dirty
        for i in range(5):  # flush_interval has long passed: still no flush
            s.append(np.full((3, 8), i, "int16"), time=np.arange(3) + 10 * i)
        assert w.dirty and w.flush_count == 0
        with Recording(path) as r:
            assert len(r.streams["gpr"]) == 0
        before = w.last_flush
        w.flush()
        assert not w.dirty and w.flush_count == 1 and w.last_flush >= before
        with Recording(path) as r:
            assert len(r.streams["gpr"]) == 15
    finally:
        w.close()


def test_appends_flush_by_default(tmp_path):
    w, s = _writer(tmp_path / "b.h5")
    try:
        s.append(np.zeros((2, 8), "int16"), time=[0, 1])
        time.sleep(0.01)  # longer than flush_interval
        s.append(np.zeros((2, 8), "int16"), time=[2, 3])
        assert w.flush_count >= 1
    finally:
        w.close()


def test_many_flushes_and_updates_read_back_exactly(tmp_path):
    """Every column of every frame, after appends of varying sizes, flushes in
    between and position updates of rows already written and still buffered."""
    path = tmp_path / "c.h5"
    rng = np.random.default_rng(0)
    w, s = _writer(path, flush_on_append=False)
    n = 0
    samples = []
    X = np.zeros(0)
    Y = np.zeros(0)
    try:
        for k in range(40):
            m = int(rng.integers(1, 30))
            smp = rng.integers(-30000, 30000, (m, 8)).astype("int16")
            s.append(smp, time=np.arange(n, n + m), sequence=np.arange(n, n + m),
                     status=np.full(m, k, np.uint16))
            samples.append(smp)
            X = np.concatenate([X, np.full(m, np.nan)])
            Y = np.concatenate([Y, np.full(m, np.nan)])
            n += m
            if k % 3 == 0:
                w.flush()
            if k % 4 == 1:  # fill in positions from some row on (written or not)
                start = int(rng.integers(0, n))
                x = rng.normal(size=n - start)
                s.update(start, x=x, y=2 * x, lon=x, lat=x, z=-x)
                X[start:] = x
                Y[start:] = 2 * x
        w.flush()
        assert not w.dirty
        s.update(0, x=np.zeros(3))  # rewriting written rows dirties the file again
        assert w.dirty
        X[:3] = 0.0
    finally:
        w.close()
    with Recording(path) as r:
        g = r.streams["gpr"]
        assert len(g) == n
        np.testing.assert_array_equal(g.samples, np.concatenate(samples))
        np.testing.assert_array_equal(g.time, np.arange(n))
        np.testing.assert_array_equal(g.sequence, np.arange(n))
        np.testing.assert_array_equal(g.x, X)
        np.testing.assert_array_equal(g.y, Y)
        assert set(np.unique(g["status"])) == set(range(40))


def test_uncompressed_writer_has_no_chunk_cache(tmp_path):
    # Rows go straight to the file at each flush; with HDF5's chunk cache the
    # whole 32-256 KiB chunk of every column was written again at every flush
    # (39 MB/s of pwrite for 0.5 MB/s of frames at the live 25 ms flushes).
    # Compressed chunks must be cached (the filter works on whole chunks).
    for compression, cached in ((None, False), ("gzip", True)):
        w = RecordingWriter(tmp_path / f"c{compression}.h5", compression=compression,
                            autoflush=False, flush_on_append=False)
        try:
            rdcc_nbytes = w._file.id.get_access_plist().get_cache()[2]
            assert (rdcc_nbytes > 0) is cached
            s = w.add_stream("emi", "emi", n_channels=4)
            w.start()
            for i in range(40):  # partial chunks, each flushed
                s.append(np.full((7, 4), i, "float32"), time=np.arange(7) + 10 * i)
                w.flush()
                with Recording(w.path) as r:
                    got = r.streams["emi"].samples
                    assert got.shape == (7 * (i + 1), 4) and (got[-7:] == i).all()
        finally:
            w.close()


def test_chunk_cache_option(tmp_path):
    w = RecordingWriter(tmp_path / "a.h5", chunk_cache=1 << 20, autoflush=False)
    try:
        assert w._file.id.get_access_plist().get_cache()[2] == 1 << 20
    finally:
        w.close()
    for bad in (-1, 1.5, True, "1M", 2**64):
        with pytest.raises(ValueError, match="chunk_cache"):
            RecordingWriter(tmp_path / "b.h5", chunk_cache=bad, autoflush=False)
        assert not (tmp_path / "b.h5").exists()
