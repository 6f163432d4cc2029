"""SEG-Y reader and rev 1 writer: round trips, segyio cross-check, hand-built files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from demine import io
from demine.errors import VendorFormatError
from demine.io.segy import ibm_to_float32

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gpr"
DZT16 = DATA / "gprpy-exampledata" / "GSSI" / "FILE____032.DZT"


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32])
def test_round_trip_real_bscan(tmp_path, dtype):
    src = io.read(DZT16)
    data = src.signed().astype(dtype)
    x = np.arange(src.n_traces) * 0.02
    p = io.write_segy(tmp_path / "b.sgy", data, src.sample_interval_s, x=x,
                      text="dewow; time-zero\nbackground removal")
    r = io.read(p)
    assert r.vendor == "segy" and r.samples.dtype == dtype
    assert np.array_equal(r.samples, data)
    # 0.09375 ns is stored as 94 ps in the 16-bit field and exactly in the text header
    assert r.header["binary_header"]["dt"] == 94
    assert r.sample_interval_s == pytest.approx(src.sample_interval_s, rel=1e-12)
    assert r.trace_position_m[-1] == pytest.approx(x[-1], abs=1e-3)
    assert "BACKGROUND REMOVAL" in r.header["textual_header"]
    assert r.header["textual_encoding"] == "ebcdic"
    assert r.header["binary_header"]["revision"] == 0x0100


def test_segyio_reads_what_we_write(tmp_path):
    segyio = pytest.importorskip("segyio")
    d = (np.arange(20 * 64, dtype=np.float32).reshape(20, 64) - 300.0) / 7.0
    p = io.write_segy(tmp_path / "f.sgy", d, 1e-10, x=np.arange(20) * 0.01,
                      y=np.full(20, 5.0))
    with segyio.open(p, ignore_geometry=True) as f:
        assert f.tracecount == 20 and len(f.samples) == 64
        got = np.stack([f.trace[i] for i in range(20)])
        assert np.array_equal(got, d)
        assert f.bin[segyio.BinField.Format] == 5
        assert f.bin[segyio.BinField.SEGYRevision] == 1  # segyio shows the major byte
        assert f.header[3][segyio.TraceField.SourceX] == 30  # 0.03 m at scalar -1000
        assert f.header[3][segyio.TraceField.SourceGroupScalar] == -1000
        assert f.header[0][segyio.TraceField.TRACE_SAMPLE_INTERVAL] == 100  # ps


def test_we_read_what_segyio_writes(tmp_path):
    segyio = pytest.importorskip("segyio")
    spec = segyio.spec()
    spec.format = 1  # IBM float: exercises the conversion
    spec.samples = list(range(50))
    spec.tracecount = 7
    d = np.linspace(-1000, 1000, 7 * 50, dtype=np.float32).reshape(7, 50)
    p = tmp_path / "s.sgy"
    with segyio.create(p, spec) as f:
        for i in range(7):
            f.header[i] = {segyio.TraceField.TRACE_SAMPLE_INTERVAL: 4000}
            f.trace[i] = d[i]
        f.bin.update(hdt=4000)
    r = io.read(p)
    assert r.sample_interval_s == pytest.approx(4e-3)  # standard microseconds
    assert r.samples.dtype == np.float32
    np.testing.assert_allclose(r.samples, d, rtol=1e-6)


def test_ibm_float_known_values():
    # Textbook IBM single-precision encodings.
    words = np.array([0x42640000, 0xC276A000, 0x41100000, 0x00000000], dtype=np.uint32)
    assert ibm_to_float32(words).tolist() == [100.0, -118.625, 1.0, 0.0]


def build_segy(ns: int, n: int, fmt: int, *, endian: str = ">", n_ext: int = 0,
               dt_us: int = 250, payload: bytes | None = None) -> bytes:
    text = ("C01 HAND MADE".ljust(3200)).encode("cp037")
    binh = bytearray(400)
    struct.pack_into(endian + "H", binh, 16, dt_us)
    struct.pack_into(endian + "H", binh, 20, ns)
    struct.pack_into(endian + "h", binh, 24, fmt)
    struct.pack_into(endian + "h", binh, 304, n_ext)
    body = bytearray()
    code = {2: "i", 3: "h", 5: "f", 8: "b"}[fmt]
    for k in range(n):
        th = bytearray(240)
        struct.pack_into(endian + "i", th, 0, k + 1)
        struct.pack_into(endian + "H", th, 114, ns)
        struct.pack_into(endian + "H", th, 116, dt_us)
        body += th + struct.pack(f"{endian}{ns}{code}", *[(k * 10 + j) % 100 for j in range(ns)])
    return bytes(text) + bytes(binh) + bytes(3200 * n_ext) + (payload or bytes(body))


@pytest.mark.parametrize("endian", [">", "<"])
@pytest.mark.parametrize("fmt", [2, 3, 5, 8])
def test_hand_built_formats(tmp_path, endian, fmt):
    p = tmp_path / "h.segy"
    p.write_bytes(build_segy(12, 5, fmt, endian=endian, n_ext=1))
    r = io.read(p)
    want = np.array([[(k * 10 + j) % 100 for j in range(12)] for k in range(5)])
    assert np.array_equal(r.samples.astype(np.int64), want)
    assert r.header["byte_order"] == ("big" if endian == ">" else "little")
    assert r.sample_interval_s == pytest.approx(250e-6)


@pytest.mark.parametrize(
    ("blob", "field"),
    [
        (build_segy(12, 5, 3)[:3000], "binary header"),
        (build_segy(12, 5, 3)[:-5], "payload"),
        (build_segy(12, 5, 3)[:3224] + b"\x00\x63" + build_segy(12, 5, 3)[3226:], "format"),
        (build_segy(12, 5, 3, n_ext=30000)[:4000], "n_extended_headers"),
        (build_segy(12, 5, 3, dt_us=0), "dt"),
    ],
)
def test_corrupt_files_name_the_field(tmp_path, blob, field):
    p = tmp_path / "c.sgy"
    p.write_bytes(blob)
    with pytest.raises(VendorFormatError, match=f"c.sgy.*'{field}'"):
        io.read(p)


def test_detect_by_magic_without_extension(tmp_path):
    p = tmp_path / "noext"
    p.write_bytes(build_segy(8, 2, 3))
    assert io.detect(p) == "segy"
    q = tmp_path / "dzt_noext"
    q.write_bytes(DZT16.read_bytes()[: 1024 + 4 * 1024])
    assert io.detect(q) == "gssi"
    (tmp_path / "junk.bin").write_bytes(b"hello")
    with pytest.raises(VendorFormatError, match="unrecognised"):
        io.read(tmp_path / "junk.bin")


@settings(max_examples=40, deadline=None)
@given(
    data=hnp.arrays(
        dtype=st.sampled_from([np.int16, np.int32, np.float32]),
        shape=st.tuples(st.integers(1, 6), st.integers(1, 40)),
        elements={"allow_nan": False, "allow_infinity": False},
    ),
    dt_s=st.sampled_from([1e-11, 9.375e-11, 4e-10, 2.5e-9, 1e-6, 2e-3]),
)
def test_write_read_round_trip_property(tmp_path_factory, data, dt_s):
    p = tmp_path_factory.mktemp("rt") / "p.sgy"
    io.write_segy(p, data, dt_s)
    r = io.read(p)
    assert r.samples.dtype == data.dtype
    assert np.array_equal(r.samples, data)
    assert r.sample_interval_s == pytest.approx(dt_s, rel=1e-9)


def test_a_truncated_segy_gets_no_hint_of_another_format(tmp_path):
    """From review: a SEG-Y file whose textual header does not begin with "C"
    (which the reader accepts, the content check does not) was told that its
    bytes did not look like SEG-Y and to choose another reader."""
    p = io.write_segy(tmp_path / "f.sgy", np.zeros((20, 64), np.float32), 1e-10,
                      x=np.arange(20) * 0.01)
    raw = bytearray(p.read_bytes())
    raw[:3200] = b" " * 3200
    cut = tmp_path / "cut.sgy"
    cut.write_bytes(bytes(raw[:-10]))
    with pytest.raises(VendorFormatError) as err:
        io.read(cut)
    assert "truncated" in str(err.value) and "--vendor" not in str(err.value)
