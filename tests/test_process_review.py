"""demine.process.process_recording over several streams of one kind."""

from __future__ import annotations

import json

import h5py
import numpy as np

from demine.process import process_recording
from demine.recording import RecordingWriter


def test_each_stream_is_processed_with_its_own_gate_times(tmp_path):
    """Two EMI streams with different gate times through one chain: each is
    balanced with its own gates (the second was processed, and its history
    written, with the first one's gate times; with a different gate count it
    failed), so each output equals the stream processed alone."""
    rng = np.random.default_rng(0)
    gates = {"emiA": np.geomspace(1e-5, 1e-3, 8), "emiB": np.geomspace(2e-5, 5e-4, 6)}
    path = tmp_path / "two.h5"
    t = np.arange(3000, dtype=np.int64) * 1_000_000
    amp = 1 + 0.3 * np.sin(np.arange(3000) / 200)
    with RecordingWriter(path) as w:
        streams = {name: w.add_stream(name, "emi", n_channels=g.size, dtype="float32",
                                      gate_times=g) for name, g in gates.items()}
        for name, g in gates.items():
            x = amp[:, None] / g[None, :] * 1e-5 + rng.normal(scale=1e-4, size=(3000, g.size))
            streams[name].append(x.astype(np.float32), time=t)
    both = tmp_path / "both.h5"
    process_recording(path, "emi_default", both)
    for name, g in gates.items():
        alone = tmp_path / f"{name}.h5"
        process_recording(path, "emi_default", alone, streams=[name])
        with h5py.File(both, "r") as fb, h5py.File(alone, "r") as fa:
            db, da = fb[f"derived/{name}/emi_default"], fa[f"derived/{name}/emi_default"]
            history = json.loads(db.attrs["history"])
            soil = next(h for h in history if h["step"] == "emi.soil")
            np.testing.assert_allclose(soil["params"]["gate_times"], g)
            np.testing.assert_array_equal(db["data"][()], da["data"][()])
