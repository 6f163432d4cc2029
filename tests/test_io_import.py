"""``demine import``: vendor files to recordings that keep raw samples and vendor header."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from demine import io
from demine.cli import main
from demine.errors import VendorFormatError
from demine.recording import Recording

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GSSI16 = DATA / "gpr" / "gprpy-exampledata" / "GSSI" / "FILE____032.DZT"
GSSI32 = DATA / "gpr" / "impdar-test-data" / "test_gssi.DZT"
RD3 = DATA / "gpr" / "impdar-test-data" / "ten_col.rad"
DT1 = DATA / "gpr" / "gprpy-exampledata" / "SnS" / "ComOffs" / "XLINE00.DT1"


def test_import_gssi16_keeps_every_sample_exactly(tmp_path):
    out = tmp_path / "dzt.h5"
    assert main(["import", str(GSSI16), "--out", str(out)]) == 0
    raw = io.read(GSSI16).samples
    with Recording(out) as rec:
        s = rec.streams["gpr"]
        stored = np.asarray(s.samples)
        attrs = s.attrs
        x = np.asarray(s.x)
    # Recordings hold int16/int32/float32; GSSI's uint16 is stored minus its mid-scale
    # 32768, which is a bijection: adding 32768 back must give the file's bytes exactly.
    assert stored.dtype == np.int16
    assert np.array_equal(stored.astype(np.int32) + 32768, raw.astype(np.int32))
    hdr = json.loads(attrs["vendor_header"])
    assert hdr["rh_nsamp"] == 512 and hdr["rh_bits"] == 16 and hdr["data_offset"] == 1024
    assert attrs["vendor_dtype"] == "uint16" and attrs["vendor_zero_offset"] == 32768
    # rhf_spm = 50 scans/m in the header -> 2 cm between traces
    assert x[1] - x[0] == pytest.approx(0.02)


def test_import_gssi32_with_dzg_without_fix(tmp_path):
    out = tmp_path / "g32.h5"
    assert main(["import", str(GSSI32), "--out", str(out)]) == 0
    with Recording(out) as rec:
        gpr = np.asarray(rec.streams["gpr"].samples)
        gps = rec.streams["gps"]
        lat = np.asarray(gps["lat"])
        fq = np.asarray(gps["fix_quality"])
        seq = np.asarray(gps.sequence)
        t = np.asarray(rec.streams["gpr"].time)
    assert gpr.dtype == np.int32 and gpr.shape == (345, 2048)
    assert np.array_equal(gpr, io.read(GSSI32).samples)
    # All 14 GGA sentences in the DZG report fix quality 0: rows kept, positions NaN.
    assert lat.size == 14 and np.all(np.isnan(lat)) and np.all(fq == 0)
    assert seq[0] == 23  # "$GSSIS,23,-1" precedes the first GGA
    assert np.all(np.diff(t) > 0)


@pytest.mark.parametrize("src", [RD3, DT1])
def test_import_other_vendors(tmp_path, src):
    out = tmp_path / "o.h5"
    assert main(["import", str(src), "--out", str(out)]) == 0
    rd = io.read(src)
    with Recording(out) as rec:
        s = rec.streams["gpr"]
        assert np.array_equal(np.asarray(s.samples), rd.samples)
        assert json.loads(s.attrs["vendor_header"])
        assert s.attrs["sample_interval"] == pytest.approx(rd.sample_interval_s)


def test_import_bad_file_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.DZT"
    bad.write_bytes(GSSI16.read_bytes()[:2000])  # header + a partial scan
    assert main(["import", str(bad), "--out", str(tmp_path / "o.h5")]) == 2
    err = capsys.readouterr().err
    assert "bad.DZT" in err and "payload" in err and len(err.strip().splitlines()) == 1


def test_import_multichannel_dzt_one_stream_per_channel(tmp_path):
    import struct

    scans, nchan, nsamp = 6, 2, 16
    hdr = bytearray(1024)
    struct.pack_into("<HHHHH", hdr, 0, 0x00FF, 1024, nsamp, 16, 0)
    struct.pack_into("<fffff", hdr, 10, 10.0, 0.0, 0.0, 0.0, 8.0)
    struct.pack_into("<H", hdr, 52, nchan)
    data = np.zeros((scans, nchan, nsamp), np.uint16)
    data[:, 0] = 30000
    data[:, 1] = 40000 + np.arange(scans)[:, None]
    src = tmp_path / "two.DZT"
    src.write_bytes(bytes(hdr) * nchan + data.tobytes())
    out = tmp_path / "two.h5"
    assert main(["import", str(src), "--out", str(out), "--json"]) == 0
    with Recording(out) as rec:
        assert sorted(rec.streams) == ["gpr_ch0", "gpr_ch1"]
        ch0 = np.asarray(rec.streams["gpr_ch0"].samples)
        ch1 = np.asarray(rec.streams["gpr_ch1"].samples)
    # stored = value - 32768 (exact), channel by channel from the interleaved scans
    assert np.all(ch0 == 30000 - 32768)
    assert np.array_equal(ch1[:, 0], 40000 - 32768 + np.arange(scans))


def test_import_refuses_to_overwrite(tmp_path):
    out = tmp_path / "o.h5"
    assert main(["import", str(RD3), "--out", str(out)]) == 0
    assert main(["import", str(RD3), "--out", str(out)]) == 2
    assert main(["import", str(RD3), "--out", str(out), "--overwrite"]) == 0


IWA = DATA / "landmine" / "iwagpr2017-rd3-subset" / "buried_objects_xdir_bscan_10.rd3"


def test_import_trace_spacing_replaces_a_wrong_header(tmp_path):
    """The IWAGPR 2017 B-scans' headers say DISTANCE INTERVAL 0.025 m (the
    spacing of the lines); the challenge's instructions say 91 traces every
    0.01 m (0.9 m).  Read as the header says, every hyperbola is 2.5 times too
    wide: ``--trace-spacing`` puts the traces where they were."""
    as_file, given = tmp_path / "file.h5", tmp_path / "given.h5"
    assert main(["import", str(IWA), "-o", str(as_file)]) == 0
    assert main(["import", str(IWA), "-o", str(given), "--trace-spacing", "0.01"]) == 0
    with Recording(as_file) as a, Recording(given) as b:
        sa, sb = a.streams["gpr"], b.streams["gpr"]
        assert np.allclose(np.asarray(sa.x), 0.025 * np.arange(91))
        assert np.allclose(np.asarray(sb.x), 0.01 * np.arange(91))
        assert np.array_equal(np.asarray(sb.y), np.zeros(91))
        assert np.array_equal(np.asarray(sa.samples), np.asarray(sb.samples))
        assert sb.attrs["trace_interval_m"] == 0.01
        assert sb.attrs["trace_interval_source"] == \
            "given at import (0.01 m); the file said 0.025 m"
        assert "trace_interval_source" not in sa.attrs
        # the vendor header is kept as the file has it
        assert json.loads(sb.attrs["vendor_header"])["DISTANCE INTERVAL"] == "0.0250000000"


def test_import_trace_spacing_keeps_the_first_traces_position(tmp_path):
    # pulseEKKO gives each trace's position (the ComOffs line starts at 0 m,
    # every 0.1 m); equal steps of the given spacing start from the first
    first = float(io.read(DT1).trace_position_m[0])
    out = tmp_path / "o.h5"
    from demine.io.convert import import_file

    import_file(DT1, out, trace_spacing=0.25)
    with Recording(out) as rec:
        x = np.asarray(rec.streams["gpr"].x)
    assert np.allclose(x, first + 0.25 * np.arange(len(x)))


@pytest.mark.parametrize("bad", ["0", "-0.01", "nan", "inf", "1cm", "1e308"])
def test_import_trace_spacing_refuses_nonsense(tmp_path, capsys, bad):
    out = tmp_path / "o.h5"
    with pytest.raises(SystemExit) as exc:
        main(["import", str(IWA), "-o", str(out), f"--trace-spacing={bad}"])
    assert exc.value.code == 2
    assert "--trace-spacing" in capsys.readouterr().err
    assert not out.exists()


def test_import_file_trace_spacing_is_checked(tmp_path):
    from demine.errors import ConfigError
    from demine.io.convert import import_file

    with pytest.raises(ConfigError, match="trace_spacing"):
        import_file(IWA, tmp_path / "o.h5", trace_spacing=0.0)
    assert not (tmp_path / "o.h5").exists()


def test_info_says_an_imported_file_has_no_trace_times(tmp_path, capsys):
    """The IWAGPR files give no trace timing: their stored times are the trace
    numbers in ns, which info had shown as a 1 GHz trace rate from 1970."""
    out = tmp_path / "iwa.h5"
    assert main(["import", str(IWA), "-o", str(out), "--trace-spacing", "0.01"]) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "91 frames, no trace times in the file, x 0.000..0.900 m" in text
    assert "1970" not in text and "Hz" not in text
    with Recording(out) as rec:
        assert rec.summary()["streams"]["gpr"]["time_source"].startswith("trace index")


IWA_DIR = IWA.parent


def _copy_line(src: Path, dst_dir: Path, stem: str) -> Path:
    """A RAMAC line (.rd3 and its .rad) under another name, in a temporary directory."""
    import shutil

    for suffix in (".rd3", ".rad"):
        shutil.copyfile(src.with_suffix(suffix), dst_dir / f"{stem}{suffix}")
    return dst_dir / f"{stem}.rd3"


def test_import_survey_lines(tmp_path, capsys):
    """Five IWAGPR x-direction lines as one survey: one stream, line k at
    y = k * spacing in the natural order of the names, each along x."""
    names = [1, 10, 19, 28, 37]
    src = [IWA_DIR / f"buried_objects_xdir_bscan_{k}.rd3" for k in names]
    # named so that the shell's order (line10 ... line13, line9) is not the lines'
    files = [_copy_line(p, tmp_path, f"line{9 + k}") for k, p in enumerate(src)]
    out = tmp_path / "grid.h5"
    assert main(["import", *map(str, sorted(files, key=str)), "-o", str(out),
                 "--trace-spacing", "0.01", "--line-spacing", "0.225"]) == 0
    assert "(5 lines)" in capsys.readouterr().out
    with Recording(out) as rec:
        s = rec.streams["gpr"]
        samples, x, y = np.asarray(s.samples), np.asarray(s.x), np.asarray(s.y)
        survey = json.loads(s.attrs["survey_lines"])
        assert s.attrs["line_spacing_m"] == 0.225
        assert np.all(np.diff(np.asarray(s.time)) > 0)
    assert [ln["file"] for ln in survey] == [f"line{9 + k}.rd3" for k in range(5)]
    assert samples.shape == (455, 2078)
    for k, p in enumerate(src):   # each line's samples as read, at its y
        rows = slice(91 * k, 91 * (k + 1))
        assert np.array_equal(samples[rows], io.read(p).samples)
        assert np.allclose(x[rows], 0.01 * np.arange(91))
        assert np.allclose(y[rows], 0.225 * k) and survey[k]["y"] == pytest.approx(0.225 * k)


def test_import_survey_lines_refuses_files_of_another_survey(tmp_path, capsys):
    iwa = _copy_line(IWA, tmp_path, "a")
    ten = _copy_line(RD3.with_suffix(".rd3"), tmp_path, "b")
    out = tmp_path / "o.h5"
    assert main(["import", str(iwa), str(ten), "-o", str(out), "--line-spacing", "0.5",
                 "--trace-spacing", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "b.rd3: samples per trace" in err and "not lines of one survey" in err
    # files without trace positions need --trace-spacing
    ten2 = _copy_line(RD3.with_suffix(".rd3"), tmp_path, "c")
    assert main(["import", str(ten), str(ten2), "-o", str(out), "--line-spacing", "0.5"]) == 2
    assert "gives no trace positions: give --trace-spacing" in capsys.readouterr().err
    assert main(["import", str(iwa), "-o", str(out), "--line-spacing", "0.5"]) == 2
    assert "two lines or more" in capsys.readouterr().err
    assert not out.exists()


def test_detect_on_survey_lines_puts_alarms_on_their_line(tmp_path):
    from demine.pipeline import detect_recording

    files = [IWA_DIR / f"buried_objects_xdir_bscan_{k}.rd3" for k in (1, 10, 19)]
    out = tmp_path / "grid.h5"
    from demine.io.convert import import_file

    import_file(files, out, trace_spacing=0.01, line_spacing=0.225)
    with pytest.warns(UserWarning, match="gives no time zero"):
        a = detect_recording(out, {"gpr": {"detector": {"threshold": 8}}})
    assert len(a["y"]) > 0
    assert np.allclose(np.asarray(a["y"]) / 0.225, np.round(np.asarray(a["y"]) / 0.225),
                       atol=0.05)


def test_survey_lines_are_lines_not_a_scans(tmp_path, capsys):
    # gprMax runs (one A-scan each) with --line-spacing: each would be a 1-trace "line"
    from demine.io import write_segy

    files = []
    for k in range(2):
        p = tmp_path / f"run{k}.sgy"
        write_segy(p, np.zeros((1, 64), np.float32), 1e-10, x=np.zeros(1))
        files.append(p)
    assert main(["import", *map(str, files), "-o", str(tmp_path / "o.h5"),
                 "--line-spacing", "0.1", "--trace-spacing", "0.01"]) == 2
    assert "1 trace(s): not a line" in capsys.readouterr().err


WARR = DATA / "gpr" / "gprpy-exampledata" / "SnS" / "WARR" / "XLINE00.DT1"


def test_survey_lines_must_share_a_time_zero(tmp_path, capsys):
    """One stream has one calibration: a line whose header puts time zero
    elsewhere (46 samples later here) would have its depths off."""
    import shutil

    for stem, tz in (("w1", "34.07"), ("w2", "80.00")):
        shutil.copyfile(WARR, tmp_path / f"{stem}.DT1")
        hd = WARR.with_suffix(".HD").read_text(errors="replace")
        (tmp_path / f"{stem}.HD").write_text(hd.replace("34.07", tz))
    out = tmp_path / "o.h5"
    assert main(["import", str(tmp_path / "w1.DT1"), str(tmp_path / "w2.DT1"), "-o", str(out),
                 "--line-spacing", "0.5"]) == 2
    assert "w2.DT1: time zero sample 79.0, but w1.DT1 has 33.07" in capsys.readouterr().err


def test_survey_times_that_run_back_fall_back_to_trace_order(tmp_path):
    """The same DZT as line_2 and line_10: its own times would run back at the
    join (info had then shown a 200 Hz survey of 10 s); the trace order is kept."""
    import shutil

    files = []
    for stem in ("line_10", "line_2"):
        shutil.copyfile(GSSI16, tmp_path / f"{stem}.DZT")
        files.append(tmp_path / f"{stem}.DZT")
    out = tmp_path / "o.h5"
    from demine.io.convert import import_file

    import_file(files, out, line_spacing=0.5)
    with Recording(out) as rec:
        s = rec.streams["gpr"]
        t = np.asarray(s.time)
        assert np.all(np.diff(t) > 0) and t[-1] - t[0] == len(t) - 1
        assert "own times do not increase" in s.attrs["time_source"]
        assert json.loads(s.attrs["survey_lines"])[0]["file"] == "line_2.DZT"
        summary = rec.summary()["streams"]["gpr"]
    assert summary["rate_hz"] is None and summary["start_utc"] is None


def test_survey_path_is_its_lines(tmp_path, capsys):
    """Five 0.9 m lines: 4.5 m of line, not the 8.2 m the returns between
    lines added (each shorter than the 1 m gap that breaks a path)."""
    from demine.evaluate import evaluate_recordings
    from demine.io.convert import import_file

    files = [IWA_DIR / f"buried_objects_xdir_bscan_{k}.rd3" for k in (1, 10, 19, 28, 37)]
    out = tmp_path / "grid.h5"
    import_file(files, out, trace_spacing=0.01, line_spacing=0.225)
    ev = evaluate_recordings([out], stream="gpr")
    assert ev.path_m == pytest.approx(4.5)
    assert ev.area_m2 < 5 * 0.9 * 0.3 + 5 * 0.1   # (no diagonal strips between lines)
    assert main(["info", str(out)]) == 0
    assert "455 frames, no trace times in the file, x 0.000..0.900 m" in capsys.readouterr().out


def test_a_renamed_file_is_told_what_it_looks_like(tmp_path, capsys):
    """From the session-28 radar audit: a DZT named .sgy failed with "sample
    format code 1633 is not supported" and a .rd3 named .DZT with "2214
    channels", neither saying that the extension chose the reader."""
    dzt = tmp_path / "line.sgy"
    dzt.write_bytes(GSSI16.read_bytes())
    assert main(["import", str(dzt), "-o", str(tmp_path / "a.h5")]) == 2
    assert "(its bytes look like a gssi file: give --vendor gssi)" in capsys.readouterr().err
    assert main(["import", str(dzt), "-o", str(tmp_path / "a.h5"), "--vendor", "gssi"]) == 0
    rd3 = tmp_path / "line.DZT"
    rd3.write_bytes((DATA / "gpr" / "impdar-test-data" / "ten_col.rd3").read_bytes())
    with pytest.raises(VendorFormatError, match=r"its bytes do not look like a gssi file, the "
                                                r"format its extension '\.DZT' chose"):
        io.read(rd3)
    # a genuine file of the format its extension names gets no hint (from review)
    cut = tmp_path / "cut.DZT"
    cut.write_bytes(GSSI16.read_bytes()[:-7])
    with pytest.raises(VendorFormatError) as err:
        io.read(cut)
    assert "truncated" in str(err.value) and "--vendor" not in str(err.value)
    bad = tmp_path / "bad.rd3"
    bad.write_bytes(b"\0" * 100)
    (tmp_path / "bad.rad").write_text("SAMPLES:512\r\nFREQUENCY:1000\r\n")
    with pytest.raises(VendorFormatError) as err:
        io.read(bad)
    assert "--vendor" not in str(err.value)   # (MALA's bytes cannot be told)


def test_a_damaged_h5_is_not_called_another_tools_hdf5_file(tmp_path):
    bad = tmp_path / "model.h5"
    bad.write_bytes(b"garbage, not HDF5" * 10)
    with pytest.raises(VendorFormatError, match="not an HDF5 file"):
        io.read(bad)
    import h5py

    with h5py.File(tmp_path / "other.h5", "w", userblock_size=1024) as f:
        f.attrs["x"] = 1
    with pytest.raises(VendorFormatError, match="HDF5 file without a root 'gprMax'"):
        io.read(tmp_path / "other.h5")


def test_vendor_marks_lie_on_the_profiles_line(tmp_path):
    """A profile's traces are at y = 0 of its own line; its vendor marks had
    y NaN (left off lane maps)."""
    out = tmp_path / "g.h5"
    assert main(["import", str(GSSI16), "-o", str(out)]) == 0
    with Recording(out) as rec:
        m = rec.markers
        s = rec.streams["gpr"]
        assert len(m["x"]) > 0
        np.testing.assert_array_equal(m["y"], 0.0)
        idx = [int(str(n).split("trace ")[1].rstrip("'")) for n in m["note"]]
        np.testing.assert_allclose(m["x"], s.x[idx])
