"""A stream's columns grow a chunk at a time, its ``time`` column row by row.

Growing a dataset rewrites its metadata: done for every column at every flush
it was 40 % of a column's cost when recording live.  Columns other than
``time`` therefore grow to the end of the chunk their last row falls in;
``time`` grows to the rows written, after the others' rows are in the file.
Readers take the shortest column's length, so a live reader (and a file left by
a killed writer) shows complete rows only; ``close()`` cuts every column back
to the rows written.  Asserted on the file as h5py sees it."""

from __future__ import annotations

import h5py
import numpy as np

from demine.recording import Recording, RecordingWriter


def _shapes(path):
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        g = f["streams"]["emi"]
        return {k: v.shape[0] for k, v in g.items() if k != "gate"}


def _flushed_then_more(path, n, flushed):
    """A writer with ``flushed`` of ``n`` frames flushed and the rest appended."""
    w = RecordingWriter(path, autoflush=False, flush_on_append=False)
    s = w.add_stream("emi", "emi", n_channels=4)
    w.start()
    samples = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
    s.append(samples[:flushed], time=np.arange(flushed))
    w.flush()
    s.append(samples[flushed:], time=np.arange(flushed, n))  # not flushed
    return w, samples


def test_columns_grow_by_chunks_time_by_rows_and_close_trims(tmp_path):
    path = tmp_path / "a.h5"
    w = RecordingWriter(path, autoflush=False, flush_on_append=False)
    s = w.add_stream("emi", "emi", n_channels=4, geo=True, fields={"status": "uint16"})
    w.start()
    rng = np.random.default_rng(3)
    samples = rng.normal(size=(300, 4)).astype(np.float32)
    x = rng.normal(size=300)
    seen = []
    with h5py.File(path, "r") as f:
        chunk = {k: v.chunks[0] for k, v in f["streams"]["emi"].items() if v.chunks}
    for k in range(30):  # 30 flushes of 10 frames
        rows = slice(10 * k, 10 * k + 10)
        s.append(samples[rows], time=np.arange(rows.start, rows.stop), x=x[rows],
                 status=np.full(10, k, np.uint16))
        w.flush()
        shapes = _shapes(path)
        n = 10 * k + 10
        assert shapes["time"] == n
        for name, rows_now in shapes.items():
            if name != "time":  # grown to the end of the chunk the last row is in
                assert rows_now == -(-n // chunk[name]) * chunk[name], name
        seen.append(shapes["samples"])
        with Recording(path) as r:  # a reader sees the rows written, complete
            st = r.streams["emi"]
            assert len(st) == n
            np.testing.assert_array_equal(st.samples, samples[:n])
            np.testing.assert_array_equal(st.x, x[:n])
    # the samples' extent changed once in 30 flushes (their chunk holds > 300 rows)
    assert len(set(seen)) == 1 and seen[0] > 300
    s.append(samples[:5], time=np.arange(300, 305))  # positions not known: never written
    w.close()
    assert set(_shapes(path).values()) == {305}
    with Recording(path) as r:
        st = r.streams["emi"]
        np.testing.assert_array_equal(st.samples[:300], samples)
        np.testing.assert_array_equal(st.x[:300], x)
        assert np.isnan(st.x[300:]).all()
        np.testing.assert_array_equal(st["status"][:300], np.repeat(np.arange(30), 10))


def test_an_unclosed_file_reads_as_its_complete_rows(tmp_path):
    """A writer that dies leaves columns longer than ``time``: the reader and
    generic slicing up to ``time``'s length see the frames flushed, intact."""
    path = tmp_path / "a.h5"
    w, samples = _flushed_then_more(path, 170, 120)
    # a copy of the bytes on disk stands for the file a killed writer leaves
    # (closing would write the rest and cut the columns back)
    copy = tmp_path / "copy.h5"
    copy.write_bytes(path.read_bytes())
    shapes = _shapes(copy)
    assert shapes["time"] == 120 and shapes["samples"] > 120
    with Recording(copy) as r:
        st = r.streams["emi"]
        assert len(st) == 120
        np.testing.assert_array_equal(st.samples, samples[:120])
        np.testing.assert_array_equal(st.time, np.arange(120))
    w.close()


def test_a_failed_cut_at_close_keeps_the_flush_error_and_closes_the_file(tmp_path, monkeypatch):
    """The disk fills, then cutting the columns back fails too: close() raises the
    disk-full error (noting the second failure), the file is closed and reads
    as the frames flushed before."""
    import pytest

    from demine.errors import RecordingError
    from demine.recording import _Appender

    path = tmp_path / "a.h5"
    w, samples = _flushed_then_more(path, 40, 30)
    w.min_free_bytes = 1 << 62  # the disk is full from now on

    def fail(self):
        raise OSError("no space left for metadata")

    monkeypatch.setattr(_Appender, "trim", fail)
    with pytest.raises(RecordingError, match="disk full") as info:
        w.close()
    assert any("cutting the columns back" in n for n in info.value.__notes__)
    assert not w._file.id.valid  # closed
    with Recording(path) as r:
        st = r.streams["emi"]
        assert len(st) == 30
        np.testing.assert_array_equal(st.samples, samples[:30])
