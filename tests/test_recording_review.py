"""Recording reader: the bounded SWMR read attempts set through ctypes must
not race h5py's own calls in other threads."""

from __future__ import annotations

import threading

import h5py
import numpy as np
import pytest

from demine import recording


def hammer(setter, path, reads=1500):
    """Read a chunked, compressed dataset ``reads`` times in one thread while
    this one calls ``setter`` on a file-access property list; the errors."""
    with h5py.File(path, "w") as f:
        f.create_dataset("d", data=np.random.default_rng(0).random((2000, 64)),
                         chunks=(100, 64), compression="gzip")
    errors: list[str] = []
    done = threading.Event()

    def reader():
        try:
            with h5py.File(path, "r") as f:
                d = f["d"]
                for _ in range(reads):
                    d[:]
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(repr(exc))
        finally:
            done.set()

    t = threading.Thread(target=reader)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    t.start()
    calls = 0
    while not done.is_set():
        for _ in range(100):
            if setter(fapl.id, recording.SWMR_READ_ATTEMPTS) < 0:
                errors.append("setter failed")
        calls += 100
    t.join()
    return errors, calls


def test_read_attempts_setter_does_not_race_h5py_reads(tmp_path):
    """libhdf5 is not thread-safe and h5py releases the GIL in dataset reads
    (under its own lock); the ctypes call released the GIL too, so the two
    ran at once: the read failed ('Unspecified error in H5Dread') or the
    process died of SIGBUS within a few hundred reads."""
    setter = recording._hdf5_read_attempts_setter()
    if setter is None:
        pytest.skip("H5Pset_metadata_read_attempts not found (not Linux?)")
    errors, calls = hammer(setter, tmp_path / "race.h5")
    assert errors == []
    assert calls > 0


def test_samples_of_the_wrong_rank_are_a_schema_error(tmp_path):
    """A stream whose 'samples' is not 2-D (a foreign or damaged file): a
    SchemaError naming the file and stream when opened, not the IndexError
    that reading its channel count at open gave."""
    from demine.errors import SchemaError
    from demine.recording import Recording, RecordingWriter

    path = tmp_path / "rank.h5"
    with RecordingWriter(path) as w:
        s = w.add_stream("emi", "emi", n_channels=4, dtype="float32",
                         gate_times=[1e-5, 2e-5, 4e-5, 8e-5])
        s.append(np.ones((10, 4), np.float32), time=np.arange(10, dtype=np.int64))
    with Recording(path) as r:
        assert r.streams["emi"].n_channels == 4
    with h5py.File(path, "a") as f:
        g = f["streams/emi"]
        del g["samples"]
        g.create_dataset("samples", data=np.ones(10, np.float32), maxshape=(None,))
    with pytest.raises(SchemaError, match=r"rank\.h5.*stream 'emi'.*samples"):
        Recording(path)


def test_a_file_another_program_holds_open_for_writing_is_not_called_damaged(tmp_path):
    """A recorder that has made its file but not yet begun to append holds
    HDF5's file lock: opening it failed as "HDF5 file cannot be opened
    (damaged?)" (batch audit, session 34)."""
    import subprocess
    import sys

    from demine.errors import RecordingError
    from demine.recording import Recording

    path = tmp_path / "held.h5"
    code = ("import sys, time, numpy as np\n"
            "from demine.recording import RecordingWriter\n"
            f"with RecordingWriter({str(path)!r}) as w:\n"
            "    w.add_stream('emi', 'emi', gate_times=np.geomspace(1e-5, 1e-3, 16))\n"
            "    print('declared', flush=True)\n"
            "    sys.stdin.readline()\n")
    writer = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "declared\n"
        with pytest.raises(RecordingError, match="open for writing by another program") as e:
            Recording(path)
        assert "damaged" not in str(e.value)
    finally:
        writer.communicate("\n", timeout=30)
    with Recording(path) as rec:   # (closed by its writer: it opens)
        assert "emi" in rec.streams
