"""gprMax output reader: the shipped 3.x ``.out`` and 4.x merged ``.h5`` files,
damaged files, and demine's own HDF5 recordings (which must not pass for gprMax)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy.signal import hilbert

from demine import io
from demine.cli import main
from demine.errors import VendorFormatError
from demine.io.gprmax import is_gprmax
from demine.recording import Recording, RecordingWriter

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gpr"
CYL_DIR = DATA / "gprmax-cylinder-bscan-generated"
CYL = CYL_DIR / "cylinder_Bscan_2D_n60_gprMax-4.0.1_merged.h5"
RECT = DATA / "impdar-test-data" / "rectangle_gprMax_Bscan.h5"
GSSI_OUT = DATA / "gprmax-antenna-freespace" / "antenna_GSSI_1500_fs.out"
MALA_OUT = DATA / "gprmax-antenna-freespace" / "antenna_MALA_1200_fs.out"

pytestmark = pytest.mark.skipif(not CYL.exists(), reason="shared GPR data not present")


def test_merged_v4_bscan_shape_dt_geometry_and_waveform():
    rd = io.read(CYL)
    assert io.detect(CYL) == "gprmax" and rd.vendor == "gprmax"
    assert rd.samples.shape == (60, 637) and rd.samples.dtype == np.float32
    assert rd.sample_interval_s == pytest.approx(4.717308673499368e-12, rel=1e-12)
    with h5py.File(CYL) as h:  # trace k is column k of the (Iterations, ntraces) dataset
        assert np.array_equal(rd.samples[17], h["rxs/rx1/Ez"][:, 17])
    # src at x 0.040, rx at 0.080 for the first trace, both step 1 cell (2 mm):
    # mid-points 0.060 + 0.002 k; the centre trace 30 sits over the cylinder (x 0.120)
    assert np.allclose(rd.trace_position_m, 0.06 + 0.002 * np.arange(60))
    assert rd.trace_position_m[30] == pytest.approx(0.120)
    assert rd.trace_interval_m == pytest.approx(0.002)
    assert rd.header["antenna_offset_m"] == pytest.approx(0.040)
    assert rd.header["units"] == "V/m" and rd.header["gprMax"] == "4.0.1"
    # the waveform comes from the model's input file next to it (Ricker 1.5 GHz):
    # centre at sqrt(2) / f
    assert rd.frequency_hz == pytest.approx(1.5e9)
    assert rd.time_zero_sample * rd.sample_interval_s == pytest.approx(math.sqrt(2) / 1.5e9)
    # without the model's input file: no frequency, and time zero from the direct
    # wave (its peak at the receiver, 4 cm from the source), within 0.1 ns of the
    # source's centre
    bare = io.read(CYL, sidecars=False)
    assert math.isnan(bare.frequency_hz)
    assert bare.time_zero_sample * bare.sample_interval_s == pytest.approx(
        math.sqrt(2) / 1.5e9, abs=0.1e-9)
    assert bare.header["time_zero_source"].startswith("direct wave")


def test_cylinder_apex_where_the_model_puts_it():
    rd = io.read(CYL)
    a = rd.samples.astype(np.float64)
    a -= a.mean(axis=0)  # mean-trace removal takes the direct wave away
    env = np.abs(hilbert(a, axis=1))
    dt = rd.sample_interval_s
    k0 = int(1.5e-9 / dt)
    t_peak = (np.argmax(env[:, k0:], axis=1) + k0) * dt
    apex = np.flatnonzero(t_peak <= t_peak.min() + 0.5 * dt)
    assert 27 <= apex.min() and apex.max() <= 33
    assert rd.trace_position_m[apex].mean() == pytest.approx(0.120, abs=0.004)
    assert t_peak.min() == pytest.approx(2.345e-9, abs=0.01e-9)
    # cross-check of dt and time zero with the geometry: top 0.08 m deep in
    # eps_r 6 (v = c / sqrt(6)), Tx-Rx 0.04 m apart: two-way 1.35 ns after the
    # emission; the envelope of a 2-D line source's echo peaks a little later
    v = 299_792_458.0 / math.sqrt(6.0)
    t_geo = 2.0 * math.hypot(0.08, 0.02) / v
    t_obs = t_peak.min() - rd.time_zero_sample * dt
    assert 0.0 <= t_obs - t_geo <= 0.1e-9


def test_v3_merged_without_geometry():
    rd = io.read(RECT)
    assert rd.samples.shape == (85, 1697) and rd.samples.dtype == np.float32
    assert rd.sample_interval_s == pytest.approx(1.1793271683748419e-09)
    assert rd.trace_position_m is None and math.isnan(rd.trace_interval_m)
    assert rd.header["gprMax"] == "3.1.4"


@pytest.mark.parametrize("path, n, offset", [(GSSI_OUT, 4155, 0.059), (MALA_OUT, 3117, 0.076)])
def test_v3_out_ascan(path, n, offset):
    assert io.detect(path) == "gprmax"
    rd = io.read(path)
    assert rd.samples.shape == (1, n)
    assert rd.sample_interval_s == pytest.approx(1.9258332529375768e-12)
    assert rd.header["antenna_offset_m"] == pytest.approx(offset)
    # the .in next to it builds the antenna in Python: no #waveform line to read
    assert math.isnan(rd.frequency_hz)


def test_component_and_receiver_options():
    ez = io.read(CYL)
    hx = io.read(CYL, component="Hx")
    assert hx.header["units"] == "A/m" and not np.array_equal(hx.samples, ez.samples)
    with pytest.raises(VendorFormatError, match="component"):
        io.read(CYL, component="Er")
    with pytest.raises(VendorFormatError, match="nrx"):
        io.read(CYL, rx=2)


def _copy(tmp_path: Path, name: str = "m.h5") -> Path:
    dst = tmp_path / name
    shutil.copyfile(CYL, dst)
    return dst


@pytest.mark.parametrize("edit, field", [
    (lambda h: h.attrs.__delitem__("dt"), "dt"),
    (lambda h: h.attrs.__setitem__("dt", -1.0), "dt"),
    (lambda h: h.attrs.__setitem__("Iterations", 10_000), "Iterations"),
    (lambda h: h.attrs.__setitem__("Iterations", 2**40), "Iterations"),
    (lambda h: h.attrs.__setitem__("ntraces", 61), "ntraces"),
    (lambda h: h.__delitem__("rxs/rx1/Ez"), "rxs/rx1/Ez"),
    (lambda h: h.__delitem__("rxs/rx1"), "rxs/rx1"),
    (lambda h: h.__delitem__("trace_metadata/srcs/src1/Position"), None),
])
def test_missing_or_lying_fields_name_the_field(tmp_path, edit, field):
    p = _copy(tmp_path)
    with h5py.File(p, "r+") as h:
        edit(h)
    if field is None:  # per-trace table gone: steps x cell size still place the traces
        rd = io.read(p, sidecars=False)
        assert rd.samples.shape == (60, 637)
        assert rd.trace_position_m is not None
        return
    with pytest.raises(VendorFormatError) as ei:
        io.read(p)
    assert "m.h5" in str(ei.value) and field in str(ei.value)


def test_garbage_and_truncated_files(tmp_path):
    bad = tmp_path / "junk.out"
    bad.write_bytes(b"not HDF5 at all" * 10)
    with pytest.raises(VendorFormatError, match="junk.out"):
        io.read(bad)
    raw = CYL.read_bytes()
    for cut in (8, 512, 4096, len(raw) // 2, len(raw) - 100):
        t = tmp_path / f"cut{cut}.out"
        t.write_bytes(raw[:cut])
        with pytest.raises(VendorFormatError, match=f"cut{cut}.out"):
            io.read(t)
    # seeded byte flips: a RadarData or VendorFormatError, never another exception
    rng = np.random.default_rng(4)
    for i in range(25):
        b = bytearray(raw)
        for k in rng.integers(0, len(b), size=8):
            b[k] = int(rng.integers(0, 256))
        f = tmp_path / f"flip{i}.out"
        f.write_bytes(bytes(b))
        try:
            rd = io.read(f)
        except VendorFormatError as exc:
            assert f"flip{i}.out" in str(exc)
        else:
            assert rd.samples.size <= 60 * 637


def test_demine_recording_is_not_gprmax(tmp_path):
    rec = tmp_path / "lane.h5"
    with RecordingWriter(rec) as w:
        s = w.add_stream("gpr", "gpr", n_channels=8, dtype=np.int16, sample_interval=1e-10)
        s.append(np.zeros((3, 8), np.int16), time=np.arange(3, dtype=np.int64))
    assert not is_gprmax(rec)
    with pytest.raises(VendorFormatError, match="gprMax"):
        io.detect(rec)
    with pytest.raises(VendorFormatError):
        io.read(rec)
    with pytest.raises(VendorFormatError, match="gprMax"):
        io.read(rec, vendor="gprmax")
    with Recording(rec) as r:  # untouched
        assert r.streams["gpr"].samples.shape == (3, 8)


def test_import_to_recording(tmp_path):
    out = tmp_path / "cyl.h5"
    assert main(["import", str(CYL), "--out", str(out)]) == 0
    rd = io.read(CYL)
    with Recording(out) as rec:
        s = rec.streams["gpr"]
        assert np.array_equal(np.asarray(s.samples), rd.samples)
        assert s.sample_interval == pytest.approx(rd.sample_interval_s)
        assert np.allclose(np.asarray(s.x), rd.trace_position_m)
        # along-line positions in the line's frame: y = 0, so the traces are
        # "positioned" for the GPR detector (it skips traces without x and y)
        assert np.array_equal(np.asarray(s.y), np.zeros(60))
        cal = s.calibration
        assert cal["time_zero"] == pytest.approx(math.sqrt(2) / 1.5e9)
        assert cal["frequency"] == pytest.approx(1.5e9)
        assert cal["antenna_offset"] == pytest.approx(0.04)
        assert s.attrs["vendor"] == "gprmax"
        assert json.loads(s.attrs["vendor_header"])["ntraces"] == 60
    # a recording is refused as input, with one line and exit code 2
    assert main(["import", str(out), "--out", str(tmp_path / "again.h5")]) == 2


@pytest.mark.parametrize("kw, why", [
    ({"chunks": (64, 64)}, "never written"),
    ({"chunks": (64, 64), "compression": "gzip"}, "implausible"),
    ({}, "never written"),
])
def test_declared_but_unwritten_data_is_refused_before_allocation(tmp_path, kw, why):
    # a header that claims 4096 x 1 000 000 float32 samples (16 GB) in a small file
    p = tmp_path / "lie.h5"
    with h5py.File(p, "w") as h:
        h.attrs.update({"gprMax": "4.0.1", "dt": 1e-12, "Iterations": 4096, "nrx": 1,
                        "ntraces": 1_000_000})
        h.create_dataset("rxs/rx1/Ez", shape=(4096, 1_000_000), dtype="f4", **kw)
    with pytest.raises(VendorFormatError, match=why):
        io.read(p)


def test_minimal_v3_ascan_written_here(tmp_path):
    # gprMax 3.x A-scan layout with positions as attributes and cell steps
    p = tmp_path / "model.out"
    with h5py.File(p, "w") as h:
        h.attrs.update({"gprMax": "3.1.7", "Title": "t", "dt": 2e-12, "Iterations": 5,
                        "nrx": 1, "srcsteps": [0, 0, 0], "rxsteps": [0, 0, 0],
                        "dx_dy_dz": [0.001, 0.001, 0.001]})
        h.create_group("srcs/src1").attrs["Position"] = [0.10, 0.2, 0.0]
        g = h.create_group("rxs/rx1")
        g.attrs["Position"] = [0.13, 0.2, 0.0]
        g["Ez"] = np.arange(5, dtype=np.float32)
    (tmp_path / "model.in").write_text("#waveform: gaussian 1 1e9 w\n"
                                       "#hertzian_dipole: z 0.1 0.2 0 w\n")
    rd = io.read(p)
    assert rd.samples.tolist() == [[0, 1, 2, 3, 4]]
    assert rd.trace_position_m.tolist() == pytest.approx([0.115])
    assert rd.header["antenna_offset_m"] == pytest.approx(0.03)
    assert rd.frequency_hz == 1e9
    assert rd.time_zero_sample * rd.sample_interval_s == pytest.approx(1e-9)  # chi = 1/f


def test_import_with_truth_then_evaluate(tmp_path, capsys):
    """An FDTD line imported with its truth table can be scored by ``demine
    evaluate`` against any alarms (here an alarms CSV); a bad truth table is
    refused before anything is written."""
    truth = tmp_path / "truth.csv"
    truth.write_text("id,type,is_mine,x,y,depth\nC1,pec-cylinder,1,0.12,0.0,0.08\n")
    out = tmp_path / "cyl.h5"
    assert main(["import", str(CYL), "--out", str(out), "--truth", str(truth)]) == 0
    assert "truth: 1 targets" in capsys.readouterr().out
    with Recording(out) as rec:
        t = rec.truth
        assert t["id"].tolist() == ["C1"] and t["x"].tolist() == [0.12]
    hit = tmp_path / "hit.csv"
    hit.write_text("x,y,score\n0.124,0.0,27.2\n")
    assert main(["evaluate", str(out), "--alarms", str(hit), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n_targets"] == 1 and r["pd"] == 1.0 and r["n_alarms"] == 1
    miss = tmp_path / "miss.csv"
    miss.write_text("x,y,score\n0.45,0.0,5.0\n")  # outside the line's 0.12 m: not searched
    assert main(["evaluate", str(out), "--alarms", str(miss), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pd"] == 0.0
    bad = tmp_path / "bad.csv"
    bad.write_text("name,x,y\nC1,0.12,0\n")
    assert main(["import", str(CYL), "--out", str(tmp_path / "no.h5"), "--truth",
                 str(bad)]) == 2
    assert "column(s) ['name'] are not kept in a recording's truth table" \
        in capsys.readouterr().err
    assert not (tmp_path / "no.h5").exists()


def test_the_transmitters_polarisation_is_read_by_default(tmp_path):
    """A 3-D model's dipole may point along y: its direct wave and echoes are in
    Ey, and Ez holds only a weak cross-polarised field.  The reader takes the E
    component of most energy unless told otherwise (Ez stays the choice for a
    2-D TMz model, whose other E components are zero), and says which."""
    import shutil

    p = tmp_path / "ypol_merged.h5"
    shutil.copy(CYL, p)
    with h5py.File(p, "r+") as h:
        ez = h["rxs/rx1/Ez"][()]
        h["rxs/rx1/Ey"][...] = ez
        h["rxs/rx1/Ez"][...] = 0.025 * ez[::-1]  # weak, and not the same traces
    rd = io.read(p)
    assert rd.header["component"] == "Ey"
    assert rd.header["component_choice"].startswith("strongest E field (Ey: 99.9 %")
    assert np.array_equal(rd.samples, io.read(CYL).samples)
    assert io.read(p, component="Ez").header["component_choice"] == "given"
    assert np.allclose(io.read(p, component="Ez").samples, 0.025 * ez[::-1].T)
    assert io.read(CYL).header["component"] == "Ez"       # 2-D TMz: unchanged
    out = tmp_path / "ypol.h5"
    assert main(["import", str(p), "--out", str(out)]) == 0
    with Recording(out) as rec:
        assert np.array_equal(np.asarray(rec.streams["gpr"].samples), rd.samples)
    # no E component with a signal: Ez, whose own checks name the problem
    with h5py.File(p, "r+") as h:
        for c in ("Ex", "Ey", "Ez"):
            h[f"rxs/rx1/{c}"][...] = 0.0
    assert io.read(p).header["component_choice"].startswith("Ez (no E component")


def _split_runs(tmp_path: Path) -> list[Path]:
    """The shipped merged B-scan as the 60 single-run outputs gprMax writes before
    ``outputfiles_merge`` (``cylinder_Bscan_2D1.h5`` ...), each with its run's own
    source and receiver positions, and the model's ``.in`` beside them."""
    shutil.copy(CYL_DIR / "cylinder_Bscan_2D.in", tmp_path / "cylinder_Bscan_2D.in")
    out = []
    with h5py.File(CYL) as m:
        rxp = m["trace_metadata/rxs/rx1/Position"][()]
        srcp = m["trace_metadata/srcs/src1/Position"][()]
        skip = {"MergedContent", "MergedOutput", "MergedOutputSchemaVersion", "ntraces"}
        for k in range(rxp.shape[0]):
            p = tmp_path / f"cylinder_Bscan_2D{k + 1}.h5"
            with h5py.File(p, "w") as h:
                for a, v in m.attrs.items():
                    if a not in skip:
                        h.attrs[a] = v
                g = h.create_group("rxs/rx1")
                g.attrs.update(dict(m["rxs/rx1"].attrs))
                g.attrs["Position"] = rxp[k]
                for c in ("Ex", "Ey", "Ez", "Hx", "Hy", "Hz"):
                    g[c] = m[f"rxs/rx1/{c}"][:, k]
                h.create_group("srcs/src1").attrs["Position"] = srcp[k]
            out.append(p)
    return out


def test_the_runs_of_a_bscan_read_and_import_as_one_line(tmp_path):
    """``gprMax model.in -n 60`` writes one A-scan per run; read (in any order
    given: a shell lists run 10 before run 2) and imported as one line, they are
    the merged file, trace for trace and position for position."""
    runs = _split_runs(tmp_path)
    merged = io.read(CYL)
    rng = np.random.default_rng(0)
    rd = io.read_gprmax_series([runs[i] for i in rng.permutation(len(runs))])
    assert np.array_equal(rd.samples, merged.samples)
    assert np.allclose(rd.trace_position_m, merged.trace_position_m, atol=1e-9)
    assert rd.trace_interval_m == pytest.approx(0.002)
    assert rd.header["files"][:3] == ["cylinder_Bscan_2D1.h5", "cylinder_Bscan_2D2.h5",
                                      "cylinder_Bscan_2D3.h5"]
    assert rd.frequency_hz == merged.frequency_hz == pytest.approx(1.5e9)
    assert rd.time_zero_sample == pytest.approx(merged.time_zero_sample)
    # without the model's input file each run's time zero is a direct-wave pick;
    # the line's is picked again over all its traces, as for the merged file
    bare = io.read_gprmax_series(runs, sidecars=False)
    assert bare.header["time_zero_source"].startswith("direct wave")
    assert bare.time_zero_sample == pytest.approx(
        io.read(CYL, sidecars=False).time_zero_sample, rel=1e-12)
    out = tmp_path / "line.h5"
    assert main(["import", *map(str, sorted(runs)), "--out", str(out)]) == 0
    with Recording(out) as rec:
        s = rec.streams["gpr"]
        assert np.array_equal(np.asarray(s.samples), merged.samples)
        assert np.allclose(np.asarray(s.x), merged.trace_position_m)
        assert "60 gprMax runs" in s.attrs["vendor_file"]


def test_runs_that_do_not_belong_together_are_refused(tmp_path, capsys):
    runs = _split_runs(tmp_path)
    with pytest.raises(VendorFormatError, match="two or more"):
        io.read_gprmax_series(runs[:1])
    with pytest.raises(VendorFormatError, match=r"cylinder_Bscan_2D_n60.*'traces'.*merged"):
        io.read_gprmax_series(runs[:5] + [CYL])
    with h5py.File(runs[7], "r+") as h:
        h.attrs["dt"] = 2 * h.attrs["dt"]
    with pytest.raises(VendorFormatError, match=r"cylinder_Bscan_2D8\.h5: field 'dt'"):
        io.read_gprmax_series(runs)
    with h5py.File(runs[7], "r+") as h:
        h.attrs["dt"] = 0.5 * h.attrs["dt"]
        h["rxs/rx1"].attrs["Position"] = h["rxs/rx1"].attrs["Position"] - [0.05, 0, 0]
    with pytest.raises(VendorFormatError, match=r"2D8\.h5: field 'Position'.*does not advance"):
        io.read_gprmax_series(runs)
    # anything but gprMax runs: named, nothing written
    rec = tmp_path / "rec.h5"
    with RecordingWriter(rec):
        pass
    out = tmp_path / "bad.h5"
    assert main(["import", str(runs[0]), str(rec), "--out", str(out)]) == 2
    assert "rec.h5" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("waveform, peak", [("ricker", 1.0), ("gaussiandot", 1.0),
                                            ("gaussiandotdot", 1.0),
                                            ("gaussiandoubleprime", 2 ** 0.5)])
def test_the_centre_frequency_is_the_waveforms_spectral_peak(tmp_path, waveform, peak):
    """The radar's centre frequency (which scales the GPR detector) is where the
    waveform's spectrum peaks: f for ricker and gaussiandot(dot), sqrt(2) f for
    gaussiandoubleprime (the second derivative of gprMax's narrower gaussian)."""
    p = tmp_path / "model.out"
    n, dt, f = 4096, 2e-12, 1e9
    with h5py.File(p, "w") as h:
        h.attrs.update({"gprMax": "3.1.7", "Title": "t", "dt": dt, "Iterations": n,
                        "nrx": 1, "srcsteps": [0, 0, 0], "rxsteps": [0, 0, 0],
                        "dx_dy_dz": [0.001, 0.001, 0.001]})
        h.create_group("srcs/src1").attrs["Position"] = [0.10, 0.2, 0.0]
        g = h.create_group("rxs/rx1")
        g.attrs["Position"] = [0.13, 0.2, 0.0]
        g["Ez"] = np.zeros(n, dtype=np.float32)
    (tmp_path / "model.in").write_text(f"#waveform: {waveform} 1 {f:g} w\n"
                                       "#hertzian_dipole: z 0.1 0.2 0 w\n")
    rd = io.read(p)
    assert rd.frequency_hz == pytest.approx(peak * f)
    # checked against the spectrum of gprMax's own definition of the waveform
    t = np.arange(n) * dt
    if waveform in ("ricker", "gaussiandotdot"):
        zeta, chi = np.pi ** 2 * f ** 2, 2 ** 0.5 / f
        w = (2 * zeta * (t - chi) ** 2 - 1) * np.exp(-zeta * (t - chi) ** 2)
    elif waveform == "gaussiandot":
        zeta, chi = 2 * np.pi ** 2 * f ** 2, 1 / f
        w = -2 * zeta * (t - chi) * np.exp(-zeta * (t - chi) ** 2)
    else:
        zeta, chi = 2 * np.pi ** 2 * f ** 2, 1 / f
        w = (2 * zeta * (t - chi) ** 2 - 1) * np.exp(-zeta * (t - chi) ** 2)
    spec = np.abs(np.fft.rfft(w, 16 * n))
    fpk = np.fft.rfftfreq(16 * n, dt)[int(np.argmax(spec))]
    assert fpk == pytest.approx(rd.frequency_hz, rel=0.02)


def test_a_line_run_towards_minus_x_is_placed_at_its_model_coordinates(tmp_path):
    """From the session-28 radar audit: the cylinder B-scan with its traces run
    towards -x read at x = -0.178 ... -0.06 (the projection on the line's own
    direction), so a truth row at the model's x = 0.12 lay outside the line."""
    rev = tmp_path / "cyl_rev.h5"
    shutil.copy(CYL, rev)
    shutil.copy(CYL_DIR / "cylinder_Bscan_2D.in", tmp_path / "cyl_rev.in")
    with h5py.File(rev, "r+") as h:
        for c in ("Ex", "Ey", "Ez", "Hx", "Hy", "Hz"):
            d = h["rxs/rx1/" + c]
            d[...] = d[()][:, ::-1]
        for g in ("rxs/rx1", "srcs/src1"):
            for key in ("Position", "GridPosition"):
                d = h[f"trace_metadata/{g}/{key}"]
                d[...] = d[()][::-1]
        h.attrs["rxsteps"] = np.array([-1, 0, 0], dtype=np.int32)
        h.attrs["srcsteps"] = np.array([-1, 0, 0], dtype=np.int32)
        h["rxs/rx1"].attrs["Position"] = h["trace_metadata/rxs/rx1/Position"][0]
    fwd, back = io.read(CYL), io.read(rev)
    np.testing.assert_allclose(back.trace_position_m, fwd.trace_position_m[::-1], atol=1e-12)
    assert back.header["line_direction"] == fwd.header["line_direction"] == [1.0, 0.0, 0.0]
    np.testing.assert_array_equal(back.samples, fwd.samples[::-1])
    # --trace-spacing keeps the line's direction (from review: it had laid the
    # reversed line from 0.178 on to 0.296, beyond the model)
    out = tmp_path / "rev.h5"
    assert main(["import", str(rev), "-o", str(out), "--trace-spacing", "0.002"]) == 0
    with Recording(out) as rec:
        np.testing.assert_allclose(rec.streams["gpr"].x, fwd.trace_position_m[::-1],
                                   atol=1e-9)


@pytest.mark.parametrize("second_waveform", [False, True])
def test_a_source_with_a_start_delay(tmp_path, second_waveform):
    """From the session-28 radar audit: ``#hertzian_dipole: pol x y z ID start
    stop`` had its last word (the stop time) taken for the waveform's ID: the
    delay was lost from time zero, and with a second ``#waveform:`` in the file
    the source's own was not found (frequency NaN)."""
    shutil.copy(CYL, tmp_path / "cylinder_Bscan_2D_merged.h5")
    text = (CYL_DIR / "cylinder_Bscan_2D.in").read_text()
    assert "#hertzian_dipole: z 0.040 0.170 0 my_ricker\n" in text
    text = text.replace("#hertzian_dipole: z 0.040 0.170 0 my_ricker\n",
                        "#hertzian_dipole: z 0.040 0.170 0 my_ricker 0.5e-9 3e-9\n")
    if second_waveform:
        text = text.replace("#waveform: ricker 1 1.5e9 my_ricker\n",
                            "#waveform: gaussian 1 0.5e9 unused\n"
                            "#waveform: ricker 1 1.5e9 my_ricker\n")
    (tmp_path / "cylinder_Bscan_2D.in").write_text(text)
    rd = io.read(tmp_path / "cylinder_Bscan_2D_merged.h5")
    assert rd.frequency_hz == pytest.approx(1.5e9)
    # gprMax: the source starts at 0.5 ns; a ricker's centre is sqrt(2) / f after
    assert rd.time_zero_sample * rd.sample_interval_s == pytest.approx(
        0.5e-9 + math.sqrt(2) / 1.5e9, rel=1e-9)
    assert "start delay 5e-10 s" in rd.header["time_zero_source"]
