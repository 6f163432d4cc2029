"""The reader's compiled per-read paths against their plain NumPy twins.

The drivers' ``decode`` gathers frame columns in one compiled pass
(``demine._framing.decode_columns``); the NumPy twin here is the structured view
and ``astype`` per field they used before.  Values, dtypes, shapes and the split
into runs must be identical, for any mix of frame shapes and any placement of
the frames in the buffer.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demine.drivers import get_driver
from demine.drivers.base import decode_columns
from demine.drivers.emi_pi import HEADER as EMI_HEADER
from demine.drivers.emi_pi import _header_dtype
from demine.drivers.gpr import HEADER as GPR_HEADER
from demine.drivers.gpr import _dtype
from demine.framing import Framer


# -- NumPy twins (the drivers' decode before the compiled gather) -----------------------
def _runs(keys):
    n = keys.shape[0]
    cuts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    bounds = [0, *cuts.tolist(), n]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _rows(buf, offsets, length):
    return buf[offsets[:, None] + np.arange(length)]


def emi_twin(buf, offsets, lengths):
    out = []
    for lo, hi in _runs(lengths):
        length = int(lengths[lo])
        rec = _rows(buf, offsets[lo:hi], length).reshape(-1).view(
            _header_dtype((length - EMI_HEADER - 2) // 4))
        out.append({"sequence": rec["sequence"].astype(np.int64),
                    "device_time_us": rec["clock"].astype(np.int64),
                    "samples": np.ascontiguousarray(rec["samples"], dtype=np.float32),
                    "status": rec["status"].astype(np.uint16)})
    return out


def gpr_twin(buf, offsets, lengths):
    bps = buf[offsets + 3].astype(np.int64)
    out = []
    for lo, hi in _runs(lengths * 8 + bps):
        length, b = int(lengths[lo]), int(bps[lo])
        rec = _rows(buf, offsets[lo:hi], length).reshape(-1).view(
            _dtype((length - GPR_HEADER - 2) // b, b))
        out.append({"sequence": rec["sequence"].astype(np.int64),
                    "device_time_us": rec["clock"].astype(np.int64),
                    "samples": np.ascontiguousarray(rec["samples"]),
                    "encoder": rec["encoder"].astype(np.int32),
                    "stacking": rec["stacking"].astype(np.uint16),
                    "status": rec["status"].astype(np.uint16)})
    return out


def _same(batches, twin):
    assert len(batches) == len(twin)
    for b, t in zip(batches, twin, strict=True):
        got = {"sequence": b.sequence, "device_time_us": b.device_time_us,
               "samples": b.samples, **b.fields}
        assert sorted(got) == sorted(t)
        for k, v in t.items():
            g = got[k]
            assert g.dtype == v.dtype and g.dtype.isnative, k
            assert g.shape == v.shape, k
            assert g.flags.c_contiguous, k
            # bit for bit (NaN payloads and signed zeros of float samples included)
            assert g.tobytes() == v.tobytes(), k


# -- random wire ------------------------------------------------------------------------
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
u16 = st.integers(0, 2**16 - 1)


@st.composite
def emi_frames(draw):
    n_gates = draw(st.sampled_from([4, 5, 16, 32]))
    n = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # any 32-bit pattern as a sample (NaNs, infinities, denormals, -0.0)
    samples = rng.integers(0, 2**32, (n, n_gates), dtype=np.uint32).view(np.float32)
    drv = get_driver("emi-pi")
    wire = drv.encode_arrays(draw(st.lists(u32, min_size=n, max_size=n)),
                             np.array(draw(st.lists(u64, min_size=n, max_size=n)),
                                      dtype=np.uint64).view(np.int64),
                             samples, draw(st.lists(u16, min_size=n, max_size=n)))
    size = len(wire) // n
    return [wire[i * size:(i + 1) * size] for i in range(n)]


@st.composite
def gpr_frames(draw):
    bps = draw(st.sampled_from([2, 4]))
    m = draw(st.sampled_from([128, 130, 512]))
    n = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dt = np.int16 if bps == 2 else np.int32
    info = np.iinfo(dt)
    samples = rng.integers(info.min, info.max, (n, m), dtype=dt, endpoint=True)
    drv = get_driver("gpr")
    wire = drv.encode_arrays(
        draw(st.lists(u32, min_size=n, max_size=n)),
        np.array(draw(st.lists(u64, min_size=n, max_size=n)), dtype=np.uint64).view(np.int64),
        samples,
        encoder=np.array(draw(st.lists(st.integers(-2**31, 2**31 - 1), min_size=n,
                                       max_size=n))),
        stacking=np.array(draw(st.lists(u16, min_size=n, max_size=n))),
        status=np.array(draw(st.lists(u16, min_size=n, max_size=n))))
    size = len(wire) // n
    return [wire[i * size:(i + 1) * size] for i in range(n)]


def _layout(draw, groups):
    """Frames placed in one buffer with random gaps between them."""
    frames = [f for g in groups for f in g]
    gaps = draw(st.lists(st.integers(0, 7), min_size=len(frames) + 1,
                         max_size=len(frames) + 1))
    buf, off, lens = bytearray(b"\x00" * gaps[0]), [], []
    for f, gap in zip(frames, gaps[1:], strict=True):
        off.append(len(buf))
        lens.append(len(f))
        buf += f + b"\x5a" * gap
    return (np.frombuffer(bytes(buf), dtype=np.uint8), np.array(off, dtype=np.int64),
            np.array(lens, dtype=np.int64))


@pytest.mark.parametrize(("driver", "frames", "twin"),
                         [("emi-pi", emi_frames, emi_twin), ("gpr", gpr_frames, gpr_twin)])
@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_decode_matches_numpy_twin(driver, frames, twin, data):
    groups = data.draw(st.lists(frames(), min_size=1, max_size=4))
    buf, off, lens = _layout(data.draw, groups)
    _same(get_driver(driver).decode(buf, off, lens), twin(buf, off, lens))


def test_decode_takes_any_integer_arrays_and_empty_input():
    """Offsets of another dtype or strided ones are converted; no frames, no batches."""
    drv = get_driver("emi-pi")
    wire = drv.encode_arrays([7, 8, 9], [1, 2, 3], np.ones((3, 16), np.float32))
    buf = np.frombuffer(wire, dtype=np.uint8)
    size = len(wire) // 3
    off = np.arange(0, 3 * size, size, dtype=np.int32)
    lens = np.full(3, size, dtype=np.int64)
    (b,) = drv.decode(buf, off, lens)
    assert b.sequence.tolist() == [7, 8, 9] and b.device_time_us.tolist() == [1, 2, 3]
    (b,) = drv.decode(buf, np.arange(0, 6 * size, size, dtype=np.int64)[::2][:2],
                      lens[:2])
    assert b.sequence.tolist() == [7, 9]
    assert drv.decode(buf, np.empty(0, np.int64), np.empty(0, np.int64)) == []


def test_decode_columns_refuses_frames_outside_the_buffer():
    drv = get_driver("gpr")
    wire = drv.encode_arrays([1], [2], np.zeros((1, 128), np.int16))
    buf = np.frombuffer(wire, dtype=np.uint8)
    with pytest.raises(ValueError, match="outside the buffer"):
        drv.decode(buf, np.array([4]), np.array([len(wire)]))
    with pytest.raises(ValueError, match="equal length"):
        decode_columns(buf, np.array([0, 1]), np.array([len(wire)]), np.zeros((0, 3), np.int64),
                       28, 2, 3, 0, np.zeros(5, np.int64))


@pytest.mark.parametrize("driver", ["emi-pi", "gpr"])
def test_framer_output_unchanged_under_chunking(driver):
    """Framing real wire cut into reads of every size gives the twin's arrays."""
    drv = get_driver(driver)
    rng = np.random.default_rng(3)
    if driver == "emi-pi":
        wire = drv.encode_arrays(np.arange(40), np.arange(40) * 1000,
                                 rng.normal(size=(40, 16)).astype(np.float32))
        twin = emi_twin
    else:
        wire = drv.encode_arrays(np.arange(12), np.arange(12) * 2500,
                                 rng.integers(-999, 999, (12, 256)).astype(np.int16))
        twin = gpr_twin
    buf = np.frombuffer(wire, dtype=np.uint8)
    size = len(wire) // (40 if driver == "emi-pi" else 12)
    n = len(wire) // size
    (want,) = twin(buf, np.arange(n, dtype=np.int64) * size, np.full(n, size, np.int64))
    for step in (1, 7, size - 1, size, 3 * size + 5, len(wire)):
        fr = Framer(drv)
        got = [b for i in range(0, len(wire), step) for b in fr.feed(wire[i:i + step])]
        cat = {k: np.concatenate([getattr(b, k) if k in ("sequence", "device_time_us",
                                                           "samples") else b.fields[k]
                                  for b in got]) for k in want}
        for k, v in want.items():
            assert cat[k].dtype == v.dtype and cat[k].tobytes() == v.tobytes(), (step, k)


# -- ClockFit.update_read: the reader's per-read clock call -----------------------------
def _reads(rng, n_reads):
    """Reads of a device clock as a reader sees them: steady frames, jitter, block
    crossings, a backlog after a stall, clock jumps both ways, frames without a
    device clock, host clock steps."""
    dev, host = 10**9, 1_700_000_000 * 10**9
    for _ in range(n_reads):
        n = int(rng.integers(1, 40))
        step = int(rng.choice([1000, 2500, 100_000]))
        d = dev + step * np.arange(1, n + 1, dtype=np.int64)
        dev = int(d[-1])
        host += step * n * 1000 + int(rng.integers(0, 3_000_000))
        event = rng.random()
        if event < 0.03:
            d -= int(rng.integers(1, 10**7))  # device clock back (restart)
            dev = int(d[-1])
        elif event < 0.06:
            d += int(rng.integers(2 * 10**6, 10**8))  # device clock ahead
            dev = int(d[-1])
        elif event < 0.08:
            d[int(rng.integers(0, n))] = -1  # a frame without a device clock
        elif event < 0.10:
            host += int(rng.integers(31, 90)) * 10**9  # host clock step ahead
        elif event < 0.12:
            host += 3 * 10**9  # a stall: the backlog arrives late
        elif event < 0.13 and n > 2:
            d[1] = d[0] - 5  # out of order inside a read
        yield d, host


@pytest.mark.parametrize("seed", range(6))
def test_update_read_is_update_of_one_host_time(seed):
    """``update_read(dev, t)`` returns ``(full(n, t), update(dev, full(n, t)))``
    and leaves the fit in the same state, read after read."""
    from demine.acquisition import ClockFit

    rng = np.random.default_rng(seed)
    a, b = ClockFit(window_s=5.0), ClockFit(window_s=5.0)
    for k, (dev, t) in enumerate(_reads(rng, 600)):
        host = np.full(dev.shape[0], t, dtype=np.int64)
        want = a.update(dev, host)
        got_host, got = b.update_read(dev, t)
        assert got_host.dtype == np.int64 and got.dtype == np.int64
        np.testing.assert_array_equal(got_host, host, err_msg=f"read {k}")
        np.testing.assert_array_equal(got, want, err_msg=f"read {k}")
        assert (b._coef, b._ref_dev, b._ref_host, b._last_x, b._last_t, b.resets,
                list(b._blocks)) == (a._coef, a._ref_dev, a._ref_host, a._last_x, a._last_t,
                                     a.resets, list(a._blocks)), k
    assert a.resets > 0  # the jumps did restart the fit


def test_update_read_takes_other_arrays():
    """Lists, other integer types, strided and empty arrays go the general way."""
    from demine.acquisition import ClockFit

    for dev in ([5, 6, 7], np.array([5, 6, 7], np.int32), np.arange(10, dtype=np.int64)[::3],
                np.empty(0, np.int64)):
        a, b = ClockFit(), ClockFit()
        a.update([1, 2], [10, 20])
        b.update([1, 2], [10, 20])
        host, got = b.update_read(dev, 1000)
        np.testing.assert_array_equal(host, np.full(len(dev), 1000))
        np.testing.assert_array_equal(got, a.update(dev, np.full(len(dev), 1000)))


# -- ClockFit._fit: the compiled robust line ---------------------------------------------
def _robust_line_twin(bx, br):
    """ClockFit._fit's robust part as it was written in NumPy."""
    i, j = np.triu_indices(bx.size, 1)
    b0 = float(np.median((br[j] - br[i]) / (bx[j] - bx[i])))
    a0 = float(np.median(br - b0 * bx))
    res = br - (a0 + b0 * bx)
    mad = float(np.median(np.abs(res)))
    ok = np.abs(res) < 5 * mad + 1e-4
    return a0, b0, ok


def _bits(x):
    return np.float64(x).tobytes()


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 130), st.integers(0, 2**32 - 1), st.sampled_from(["clean", "late",
                                                                         "ties", "zeros"]))
def test_robust_line_matches_numpy_twin(n, seed, kind):
    from demine import _framing

    rng = np.random.default_rng(seed)
    bx = np.sort(rng.uniform(0, 60, n)) + np.arange(n) * 1e-3
    br = 2e-3 + 3e-6 * bx + rng.exponential(2e-5, n)
    if kind == "late":  # blocks of a backlog: every frame late
        br[rng.random(n) < 0.3] += rng.uniform(0.01, 3.0)
    elif kind == "ties":  # equal minima and equal slopes
        br = np.round(br, 4)
    elif kind == "zeros":
        br = np.zeros(n) * rng.choice([1.0, -1.0])
    a0, b0, ok, n_ok = _framing.robust_line(bx, br)
    ta0, tb0, tok = _robust_line_twin(bx, br)
    assert (_bits(a0), _bits(b0)) == (_bits(ta0), _bits(tb0))
    assert ok.dtype == bool and ok.tolist() == tok.tolist() and n_ok == int(tok.sum())


def test_robust_line_nan_as_numpy():
    from demine import _framing

    bx = np.array([0.0, 1.0, 1.0, 3.0])  # a 0/0 slope
    br = np.array([0.0, 1.0, 1.0, 2.0])
    a0, b0, ok, n_ok = _framing.robust_line(bx, br)
    with np.errstate(invalid="ignore"):
        ta0, tb0, tok = _robust_line_twin(bx, br)
    assert np.isnan(b0) and np.isnan(tb0) and np.isnan(a0) and np.isnan(ta0)
    assert ok.tolist() == tok.tolist() and n_ok == 0


@pytest.mark.parametrize("seed", range(3))
def test_clock_fit_as_before_with_the_compiled_line(seed):
    """Mapped times and the fitted line equal those of the NumPy _fit, read after read."""
    from demine.acquisition import ClockFit

    class NumpyFit(ClockFit):
        def _fit(self):
            bx = np.array([b[1] for b in self._blocks])
            br = np.array([b[2] for b in self._blocks])
            if bx.size < 3 or bx[-1] - bx[0] < 2 * self.block_s:
                self._coef = (float(br.min()), self._coef[1] if bx.size > 1 else 0.0)
                return
            a0, b0, ok = _robust_line_twin(bx, br)
            if ok.sum() >= 3:
                b, a = np.polyfit(bx[ok], br[ok], 1)
            else:
                a, b = a0, b0
            self._coef = (float(a), float(b))

    rng = np.random.default_rng(100 + seed)
    a, b = NumpyFit(window_s=20.0), ClockFit(window_s=20.0)
    fits = 0
    for k, (dev, t) in enumerate(_reads(rng, 1500)):
        host = np.full(dev.shape[0], t, dtype=np.int64)
        np.testing.assert_array_equal(b.update(dev, host), a.update(dev, host), err_msg=str(k))
        assert b._coef == a._coef, k
        fits += len(b._blocks) >= 3
    assert fits > 500  # the robust line was used


# -- Framer: scan_frames, scan_binary with exact-size outputs ----------------------------
@settings(max_examples=200, deadline=None)
@given(st.data())
def test_scan_frames_is_scan_binary(data):
    """Same frames, kept tail and counters as scan_binary (garbage, flips, cuts,
    a final flush), and ``counted`` exactly when a counter moved."""
    from demine import _framing

    driver = data.draw(st.sampled_from(["emi-pi", "gpr"]))
    groups = data.draw(st.lists(emi_frames() if driver == "emi-pi" else gpr_frames(),
                                min_size=1, max_size=3))
    wire = bytearray(b"".join(f for g in groups for f in g))
    for _ in range(data.draw(st.integers(0, 4))):  # faults
        i = data.draw(st.integers(0, len(wire) - 1))
        what = data.draw(st.sampled_from(["flip", "cut", "garbage"]))
        if what == "flip":
            wire[i] ^= 1 << data.draw(st.integers(0, 7))
        elif what == "cut":
            del wire[i:i + data.draw(st.integers(1, 40))]
        else:
            wire[i:i] = bytes(data.draw(st.lists(st.integers(0, 255), min_size=1, max_size=9)))
    if not wire:
        return
    stop = data.draw(st.integers(1, len(wire)))
    final = data.draw(st.booleans())
    buf = np.frombuffer(bytes(wire[:stop]), dtype=np.uint8)
    layout = get_driver(driver).layout
    params = layout.as_array()
    c1 = np.array(data.draw(st.lists(st.integers(0, 5), min_size=6, max_size=6)), np.int64)
    c1[4] = data.draw(st.integers(0, 1))  # (in_garbage is a state)
    c2 = c1.copy()
    start = c1.tolist()
    cap = buf.shape[0] // layout.min_len + 2
    off, lens = np.empty(cap, np.int64), np.empty(cap, np.int64)
    n, keep = _framing.scan_binary(buf, 0, buf.shape[0], params, off, lens, c1, final)
    got_off, got_lens, got_keep, counted = _framing.scan_frames(buf, params, c2, final)
    assert got_off.tolist() == off[:n].tolist() and got_lens.tolist() == lens[:n].tolist()
    assert got_off.dtype == np.int64 and got_lens.dtype == np.int64
    assert got_keep == keep and c2.tolist() == c1.tolist()
    assert counted is (c2.tolist() != start)


def test_scan_frames_refuses_bad_input():
    from demine import _framing

    params = get_driver("emi-pi").layout.as_array()
    with pytest.raises(ValueError, match="non-empty"):
        _framing.scan_frames(np.zeros(0, np.uint8), params, np.zeros(6, np.int64))
    with pytest.raises(ValueError, match="uint8"):
        _framing.scan_frames(np.zeros(8, np.int16), params, np.zeros(6, np.int64))
    with pytest.raises(ValueError, match="counters"):
        _framing.scan_frames(np.zeros(8, np.uint8), params, np.zeros(5, np.int64))
