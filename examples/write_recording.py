"""Write a small demine recording from NumPy arrays, the way a lab script would.

Run ``python examples/write_recording.py [OUT.h5] [--overwrite]`` and then
``demine info OUT.h5``.
The readings here are synthetic (a pulse-induction detector passing over one
target, a radar seeing one hyperbola); a real script would append what its
instruments return.
"""

from __future__ import annotations

import argparse

import numpy as np

from demine.recording import RecordingWriter, utc_now_ns


def main(out: str = "example_recording.h5", overwrite: bool = False) -> str:
    rng = np.random.default_rng(0)
    gate_times = np.geomspace(10e-6, 1e-3, 16)  # 16 log-spaced gates, 10 µs .. 1 ms
    t0 = utc_now_ns()

    with RecordingWriter(out, site="lab bench", operator="example", lane_id="L0",
                         notes="synthetic example", overwrite=overwrite) as rec:
        emi = rec.add_stream("emi", "emi", gate_times=gate_times, driver="emi-pi",
                             device="example PI detector", units="V")
        gpr = rec.add_stream("gpr", "gpr", n_channels=512, dtype="int16", driver="gpr",
                             sample_interval=25e-12, units="counts")
        rec.add_truth([{"id": "T1", "type": "AP-min-metal", "is_mine": 1, "x": 1.0, "y": 0.0,
                        "depth": 0.05, "metal_mass": 0.0008}])

        # Detector: 2 s at 1000 readings/s along x from 0 to 2 m.
        n = 2000
        x = np.linspace(0.0, 2.0, n)
        decay = (gate_times / gate_times[0]) ** -1.5
        target = np.exp(-((x - 1.0) / 0.08) ** 2)[:, None] * decay[None, :]
        readings = (target + 0.01 * rng.standard_normal((n, gate_times.size))).astype("float32")
        for start in range(0, n, 100):  # as a device would deliver them, in chunks
            sl = slice(start, start + 100)
            emi.append(readings[sl], time=t0 + np.arange(sl.start, sl.stop) * 1_000_000,
                       sequence=np.arange(sl.start, sl.stop), x=x[sl], y=0.0, z=0.05)

        # Radar: 800 traces at 400 traces/s with one diffraction hyperbola.
        m = 800
        xt = np.linspace(0.0, 2.0, m)
        t_apex = 2 * 0.05 / 0.1e9  # two-way time to 5 cm at 0.1 m/ns
        t_hyp = 2 / 0.1e9 * np.sqrt((xt - 1.0) ** 2 + 0.05**2)
        samples_t = np.arange(512) * 25e-12
        wavelet = np.exp(-(((samples_t[None, :] - 2e-9 - t_hyp[:, None]) / 0.2e-9) ** 2))
        traces = (2000 * wavelet * (t_apex / t_hyp)[:, None]
                  + 20 * rng.standard_normal((m, 512))).astype("int16")
        gpr.append(traces, time=t0 + np.arange(m) * 2_500_000, sequence=np.arange(m), x=xt)
        rec.append_markers({"time": [t0 + 1_000_000_000], "x": [1.0], "y": [0.0],
                            "label": ["flag"], "note": ["operator marked the signal"]})
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default="example_recording.h5",
                    help="recording to write (default: %(default)s)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    args = ap.parse_args()
    print(main(args.out, overwrite=args.overwrite))
