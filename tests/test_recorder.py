"""The recorder: several devices on real pseudo-terminals into one recording."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tty

import numpy as np
import pytest

from demine.drivers import get_driver
from demine.errors import ConfigError, RecordingError
from demine.positions import LocalFrame
from demine.recorder import DeviceSpec, Recorder, parse_device
from demine.recording import Recording

GATES = np.geomspace(10e-6, 1e-3, 8)
FRAME = LocalFrame(104.9, 12.5, 10.0)


def _pty():
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)  # writes never hang a test on a reader that stopped
    path = os.ttyname(slave)
    return master, slave, path


def _write_all(fd: int, data: bytes, timeout: float = 20.0) -> None:
    """Write everything to a pty master, failing (not hanging) if nobody reads."""
    import select

    view = memoryview(data)
    deadline = time.monotonic() + timeout
    while view:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"pty reader took no data for {timeout} s")
        _, ready, _ = select.select([], [fd], [], min(left, 0.5))
        if ready:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                pass


def _gps_bytes(t_ns: np.ndarray, x: np.ndarray, y: np.ndarray) -> bytes:
    from demine.drivers.nmea import GpsFix

    nmea = get_driver("nmea")
    lon, lat = FRAME.to_geo(x, y)
    return b"".join(
        nmea.encode(GpsFix(time_ns=int(t), lat=float(la), lon=float(lo), alt=10.05,
                           fix_quality=4, satellites=14, hdop=0.6))
        for t, lo, la in zip(t_ns, lon, lat, strict=True)
    )


def test_parse_device():
    spec = parse_device("emi-pi=/dev/ttyUSB0")
    assert (spec.driver, spec.url, spec.name) == ("emi-pi", "/dev/ttyUSB0", None)
    spec = parse_device("left:emi-pi=socket://127.0.0.1:5000")
    assert (spec.name, spec.url) == ("left", "socket://127.0.0.1:5000")
    with pytest.raises(ConfigError, match="DRIVER=PORT"):
        parse_device("emi-pi")
    with pytest.raises(ConfigError):
        parse_device("no-such-driver=/dev/null")


# the writer as the recorder makes it (no HDF5 chunk cache), and with the
# cache through writer_options: the same file either way
@pytest.mark.parametrize("writer_options", [None, {"chunk_cache": 1 << 20}])
def test_two_devices_every_frame_once_with_interpolated_positions(tmp_path, writer_options):
    emi_m, emi_s, emi_path = _pty()
    gps_m, gps_s, gps_path = _pty()
    out = tmp_path / "rec.h5"
    emi = get_driver("emi-pi")
    rng = np.random.default_rng(1)
    n = 600  # 1.2 s of readings at 500 Hz
    samples = rng.standard_normal((n, GATES.size)).astype("float32")
    rec = Recorder(out, [
        DeviceSpec("emi-pi", emi_path, calibration={"gate_times": GATES.tolist()}),
        DeviceSpec("nmea", gps_path),
    ], frame=FRAME, truth=[{"id": "T1", "is_mine": 1, "x": 0.5, "y": 1.0}],
        flush_interval=0.2, startup_timeout=10, writer_options=writer_options)
    # Device clock starts at 0 and GPS time at a fixed UTC instant; the track moves
    # along x at 0.5 m/s.  The recorder opens the file only once every device has
    # sent a frame; what came before is kept.
    t0 = time.time_ns()
    starter = None
    try:
        import threading

        def feed():
            # pyserial flushes the input buffer when it opens a port, as a real
            # adapter would lose bytes sent before: start once both are open.
            while not all(r.stats.connected for r in rec._readers.values()):
                time.sleep(0.01)
            for k in range(0, n, 50):
                now = time.time_ns()
                _write_all(emi_m, emi.encode_arrays(
                    np.arange(k, k + 50), np.arange(k, k + 50) * 2000, samples[k:k + 50]))
                tg = np.array([now])
                _write_all(gps_m, _gps_bytes(tg, np.array([(now - t0) / 1e9 * 0.5]),
                                             np.array([1.0])))
                time.sleep(0.1)
            tg = np.array([time.time_ns() + 200_000_000])
            _write_all(gps_m, _gps_bytes(tg, np.array([(tg[0] - t0) / 1e9 * 0.5]),
                                         np.array([1.0])))

        starter = threading.Thread(target=feed)
        starter.start()
        rec.start()
        starter.join()
        time.sleep(0.5)
        cache = rec.writer._file.id.get_access_plist().get_cache()[2]
        assert cache == (writer_options or {}).get("chunk_cache", 0)
    finally:
        rec.stop()
        for fd in (emi_m, emi_s, gps_m, gps_s):
            os.close(fd)
    with Recording(out) as r:
        e = r.streams["emi"]
        np.testing.assert_array_equal(e.sequence, np.arange(n))  # every frame, once, in order
        np.testing.assert_array_equal(e.samples, samples)
        np.testing.assert_allclose(e.gate_times, GATES)
        assert r.attrs["origin_lon"] == FRAME.origin_lon
        g = r.streams["gps"]
        assert len(g) == n // 50 + 1
        assert set(g["fix_quality"]) == {4}
        np.testing.assert_allclose(g.y, 1.0, atol=0.01)  # NMEA keeps ~1 cm resolution here
        # Sensor frames between two fixes get interpolated positions on the track.
        x, y = e.x, e.y
        ok = np.isfinite(x)
        assert ok.mean() > 0.8
        np.testing.assert_allclose(y[ok], 1.0, atol=0.01)
        # moving forward along x, in the readings' time order (a clock fit
        # settling at start-up may step their times back: see ClockFit.max_hold_s)
        assert np.all(np.diff(x[ok][np.argsort(e.time[ok], kind="stable")]) >= -0.01)
        assert r.truth["id"][0] == "T1"
        assert "device_time_us" in e.field_names
        np.testing.assert_array_equal(e["device_time_us"], np.arange(n) * 2000)


def test_silent_device_is_a_clear_startup_error(tmp_path):
    m, s, path = _pty()
    try:
        rec = Recorder(tmp_path / "x.h5", [DeviceSpec("emi-pi", path)], startup_timeout=0.5)
        with pytest.raises(RecordingError, match="no frames within 0.5 s from emi"):
            rec.start()
    finally:
        os.close(m)
        os.close(s)
    assert not (tmp_path / "x.h5").exists()


def test_writer_options_the_recorder_sets_or_unknown_are_a_config_error(tmp_path):
    # Found in review: these used to pass the constructor and fail only in
    # start(), as a TypeError ("got multiple values for keyword argument"),
    # after the ports were opened and the first frames waited for.
    for bad in ({"fsync": True}, {"site": "x"}, {"flush_on_append": True},
                {"chunk_cach": 1 << 20}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            Recorder(tmp_path / "x.h5", [DeviceSpec("emi-pi", "/dev/null")],
                     writer_options=bad)


def _start_fails(rec, master, error, match):
    """Feed the recorder's one EMI port 20 readings and check that start() raises."""
    import threading

    emi = get_driver("emi-pi")

    def feed():
        while not all(r.stats.connected for r in rec._readers.values()):
            time.sleep(0.01)
        _write_all(master, emi.encode_arrays(np.arange(20), np.arange(20) * 2000,
                                             np.zeros((20, GATES.size), "float32")))

    starter = threading.Thread(target=feed)
    starter.start()
    with pytest.raises(error, match=match):
        rec.start()
    starter.join()


def test_writer_that_cannot_be_opened_stops_the_readers(tmp_path):
    # Found in review: when the writer could not be created in start() (here a
    # chunk_cache the writer refuses), start() raised with the readers still
    # running and their ports open; `with Recorder(...)` never calls stop().
    m, s, path = _pty()
    rec = Recorder(tmp_path / "x.h5", [DeviceSpec("emi-pi", path)], startup_timeout=10,
                   writer_options={"chunk_cache": -1})
    try:
        _start_fails(rec, m, ValueError, "chunk_cache")
        assert not any(r.running for r in rec._readers.values())
    finally:
        rec.stop()
        os.close(m)
        os.close(s)


def test_failed_open_ends_the_detector_threads_already_started(tmp_path):
    # Found in review: a failure while the writer opens after a stream's live
    # detector was made (here the truth table is refused) left that detector's
    # thread waiting for frames for ever.
    import threading

    from demine.errors import SchemaError

    m, s, path = _pty()
    rec = Recorder(tmp_path / "x.h5", [DeviceSpec("emi-pi", path,
                                                  calibration={"gate_times": GATES.tolist()})],
                   startup_timeout=10, detect=True, truth=[{"id": "T1", "x": "nope"}])
    try:
        _start_fails(rec, m, SchemaError, "truth")
        assert not rec._detectors
        assert not [t for t in threading.enumerate() if t.name.startswith("demine-detect")]
    finally:
        rec.stop()
        os.close(m)
        os.close(s)


_RECORD_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from demine.recorder import DeviceSpec, Recorder
    rec = Recorder(sys.argv[1], [DeviceSpec("emi-pi", sys.argv[2])], flush_interval=0.05)
    rec.start()
    last = -1
    while True:
        # (both under the writer's lock: read apart, a flush could come in
        # between, and its frames be printed before they are in the file)
        with rec.writer._lock:
            st = rec.writer.flush_count
            n = rec.writer.streams["emi"]._appender.n_written
        if st != last:
            last = st
            # frames durably in the file: those written before this flush
            print(n, flush=True)
        time.sleep(0.005)
    """
)


def test_recorder_killed_keeps_everything_before_last_flush(tmp_path):
    m, s, path = _pty()
    out = tmp_path / "killed.h5"
    emi = get_driver("emi-pi")
    proc = subprocess.Popen([sys.executable, "-c", _RECORD_SCRIPT, str(out), path],
                            stdout=subprocess.PIPE, text=True)
    try:
        seq = 0
        flushed = 0
        deadline = time.monotonic() + 30
        os.set_blocking(proc.stdout.fileno(), False)
        buf = ""
        while flushed < 1500 and time.monotonic() < deadline:
            block = np.arange(seq, seq + 100)
            _write_all(m, emi.encode_arrays(block, block * 1000,
                                            np.repeat(block[:, None], 8, 1).astype("f4")))
            seq += 100
            time.sleep(0.02)
            try:
                buf += proc.stdout.read() or ""
            except (BlockingIOError, TypeError):
                pass
            lines = [ln for ln in buf.split("\n") if ln.strip()]
            if lines:
                flushed = int(lines[-1])
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        rest = proc.stdout.read() or ""
        for ln in (buf + rest).split():
            flushed = max(flushed, int(ln))
    finally:
        os.close(m)
        os.close(s)
    assert flushed >= 1500
    with Recording(out) as r:
        e = r.streams["emi"]
        n = len(e)
        assert n >= flushed
        # Bytes sent before the child opened the port are flushed by the open, as
        # on a real adapter; from the first frame on, nothing is missing.
        seq = e.sequence
        np.testing.assert_array_equal(seq, seq[0] + np.arange(n))
        np.testing.assert_array_equal(e.samples, np.repeat(seq[:, None], 8, 1))


_FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    from demine.cli import main
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # writes past the limit fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (6_000_000, 6_000_000))
    sys.exit(main(["record", "--device", "emi-pi=" + sys.argv[2], "--out", sys.argv[1],
                   "--flush-interval", "0.05", "--quiet", "--duration", "60"]))
    """
)


def test_full_disk_stops_with_clear_message_and_valid_file(tmp_path):
    m, s, path = _pty()
    out = tmp_path / "full.h5"
    emi = get_driver("emi-pi")
    proc = subprocess.Popen([sys.executable, "-c", _FULL_DISK, str(out), path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seq = 0
        deadline = time.monotonic() + 60
        backlog = b""
        while proc.poll() is None and time.monotonic() < deadline:
            if len(backlog) < 65536:
                block = np.arange(seq, seq + 200)
                backlog += emi.encode_arrays(block, block * 1000,
                                             np.repeat(block[:, None], 16, 1).astype("f4"))
                seq += 200
            try:  # non-blocking, so that a recorder that stopped reading cannot hang us
                backlog = backlog[os.write(m, backlog):]
            except BlockingIOError:
                pass
            time.sleep(0.01)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        os.close(m)
        os.close(s)
    assert proc.returncode not in (0, None), (stdout, stderr)
    assert "disk full" in stderr, stderr
    assert "Traceback" not in stderr
    with Recording(out) as r:  # the file opens and holds consistent frames
        e = r.streams["emi"]
        n = len(e)
        assert n > 0
        # what the message says it keeps is what it holds (it had counted the
        # frames appended, not those flushed: 7328 said, 7258 kept)
        assert f"keeps the {n} frames written before the error" in stderr, stderr
        # every column cut back to the frames written (generic readers too)
        assert {ds.shape[0] for k, ds in e._group.items() if k != "gate"} == {n}
        seq = e.sequence
        np.testing.assert_array_equal(seq, seq[0] + np.arange(n))
        np.testing.assert_array_equal(e.samples, np.repeat(seq[:, None], 16, 1))


@pytest.mark.parametrize("detect_threads", [False, True])
def test_live_alarms_equal_batch_alarms(tmp_path, detect_threads):
    """`demine record` detects live; `demine detect` on the file finds the same
    alarms, whether the detectors run in the writer thread (the default) or in
    threads of their own."""
    from demine.pipeline import detect_recording
    from demine.simulate import SimulatedDevice, load_scene

    scene = load_scene("benign-soil")
    out = tmp_path / "live.h5"
    # (at 4 times real time the devices' default backlog, 0.1 s, held 0.4 s of
    # the lane's readings: a clean-clone CI run once found 1240 readings, 0.3 s
    # of the lane, missing at the file's opening, which a stall of the host that
    # long makes such a device drop; with 5 s a drop would need a stall of 20 s,
    # and a gap with nothing dropped is the recorder's)
    devices = [SimulatedDevice(d, scene, seed=2, duration=25.0, speed=4.0, max_backlog=5.0)
               for d in ("emi-pi", "nmea")]
    for d in devices:
        d.start()
    # a coil radius in the calibration scales the detector's distances, and a
    # transmitter pulse sets the ground balance's viscous decay, live (from the
    # profile) as in batch (from the file)
    cal = {"gate_times": scene.gate_times.tolist(), "coil_radius": 0.15,
           "pulse_length": 5e-3}
    rec = Recorder(out, [DeviceSpec(d.driver_name, d.port, calibration=cal)
                         for d in devices],
                   frame=LocalFrame(scene.anchor_lon, scene.anchor_lat, scene.anchor_alt),
                   detect=True, flush_interval=0.2, detect_threads=detect_threads)
    try:
        rec.start()
        names = {t.name for t in threading.enumerate()}
        assert ("demine-detect-emi" in names) == detect_threads
        det = rec._detectors["emi"].detector.detector
        assert det.lobe_radius == pytest.approx(0.25 * 0.15 / 0.12)
        soil = rec._detectors["emi"].detector.chain.steps[0]
        gates = np.asarray(scene.gate_times)
        viscous = 1 / gates - 1 / (gates + 5e-3)
        np.testing.assert_allclose(soil.basis[:, 0], viscous / np.linalg.norm(viscous),
                                   rtol=1e-12)
        for d in devices:
            assert d.wait(timeout=60)
        time.sleep(0.5)
    finally:
        rec.stop()
        for d in devices:
            d.stop()
    with Recording(out) as r:
        live = r.alarms
        n_frames = len(r.streams["emi"])
    assert n_frames > 5000
    batch = detect_recording(out)
    assert rec.alarms_written == len(live["x"]) == len(batch["x"]) > 0
    order = np.argsort(live["time"], kind="stable")
    np.testing.assert_array_equal(live["time"][order], batch["time"])
    np.testing.assert_allclose(live["x"][order], batch["x"], rtol=1e-9)
    np.testing.assert_allclose(live["score"][order], batch["score"], rtol=1e-6)


def _detecting_recorder(out, seed, kinds=("emi-pi", "nmea"), **device_options):
    """Simulated devices (started) and a recorder detecting live on them with
    25 ms flushes (not started)."""
    from demine.simulate import SimulatedDevice, load_scene

    scene = load_scene("benign-soil")
    # (the devices' default backlog, 0.1 s, is a stall of the loaded host's
    # test thread away from dropping frames at the device, and a gap in the
    # file is then no fault of the recorder's: a loaded run had a 60-frame
    # gap so; with 5 s a drop needs a 5 s stall, and the tests that count
    # frames check that the devices dropped none)
    device_options.setdefault("max_backlog", 5.0)
    devices = [SimulatedDevice(d, scene, seed=seed, duration=30.0, **device_options)
               for d in kinds]
    for d in devices:
        d.start()
    cal = {"emi-pi": {"gate_times": scene.gate_times.tolist()},
           "gpr": {"sample_interval": scene.gpr.time_window / scene.gpr.samples,
                   "time_zero": 0.0}}
    rec = Recorder(out, [DeviceSpec(d.driver_name, d.port,
                                    calibration=cal.get(d.driver_name, {}))
                         for d in devices],
                   frame=LocalFrame(scene.anchor_lon, scene.anchor_lat, scene.anchor_alt),
                   detect=True, flush_interval=0.025)
    return rec, devices


def test_inline_detection_follows_the_flush_and_a_failure_loses_no_frame(tmp_path):
    """With the detectors in the writer thread, every chunk reaches the
    detector after the pass that appended it, and after that pass's flush
    when one was due (with 25 ms flushes, nearly every pass; not a pass that
    came less than half an interval after the last flush), and a detector
    that raises stops the recording with its error while every frame
    received stays in the file."""
    out = tmp_path / "fail.h5"
    rec, devices = _detecting_recorder(out, seed=3)
    # (frames given so far, appended to the writer, written to the file)
    seen: list[tuple[int, int, int]] = []
    given = 0
    try:
        rec.start()
        assert not [t for t in threading.enumerate() if t.name.startswith("demine-detect")]
        worker = rec._detectors["emi"]
        process = worker.detector.process

        def checked(samples, x, y, t):
            nonlocal given
            given += len(t)
            stream = rec._streams["emi"]
            seen.append((given, stream.n_frames, stream._appender.n_written))
            if len(seen) == 20:
                raise ValueError("detector broke on purpose")
            return process(samples, x, y, t)

        worker.detector.process = checked
        with pytest.raises(RecordingError, match="detector broke on purpose"):
            rec.run(20)
        assert len(seen) == 20
    finally:
        rec.stop()
        for d in devices:
            d.stop()
    assert all(n_given <= n_appended for n_given, n_appended, _ in seen)
    flushed = [n_given <= n_file for n_given, _, n_file in seen]
    assert sum(flushed) >= 0.8 * len(flushed)
    assert [d.bytes_dropped for d in devices] == [0, 0]  # (a gap below is the recorder's)
    with Recording(out) as r:  # everything received, the failed chunk's frames too
        seq = r.streams["emi"].sequence
        assert seq.size == rec.frames_written["emi"] >= seen[-1][0]
        np.testing.assert_array_equal(seq, seq[0] + np.arange(seq.size))


def _count_delivered(rec):
    """Count the frames each reader hands to the recorder (wraps its callback)."""
    delivered = dict.fromkeys(rec._readers, 0)
    lock = threading.Lock()
    for name, reader in rec._readers.items():
        inner = reader.on_frames

        def counted(batch, name=name, inner=inner):
            with lock:
                delivered[name] += len(batch)
            inner(batch)

        reader.on_frames = counted
    return delivered


def test_a_failed_detector_stops_nothing_else(tmp_path):
    """After a detector raises, the recorder is stopped a little later (as the
    CLI does): every frame the readers delivered is in the file, every frame
    that a GPS fix covers is placed, and the other detector still finishes
    (its last alarms written)."""
    out = tmp_path / "one-fails.h5"
    rec, devices = _detecting_recorder(out, seed=3, kinds=("emi-pi", "gpr", "nmea"))
    delivered = _count_delivered(rec)
    finished = []
    try:
        rec.start()
        emi, gpr = rec._detectors["emi"], rec._detectors["gpr"]
        process, finish = emi.detector.process, gpr.detector.finish
        calls = []

        def failing(*a):
            calls.append(1)
            if len(calls) == 60:
                raise ValueError("detector broke on purpose")
            return process(*a)

        def finishing():
            finished.append(threading.current_thread().name)
            return finish()

        emi.detector.process = failing
        gpr.detector.finish = finishing
        with pytest.raises(RecordingError, match="detector broke on purpose"):
            rec.run(20)
        time.sleep(0.3)  # frames keep coming until the caller stops
    finally:
        rec.stop()
        for d in devices:
            d.stop()
    assert len(finished) == 1  # (in the main thread, or the detector's if it was moved)
    with Recording(out) as r:
        for name, n in delivered.items():
            assert n > 0 and len(r.streams[name]) == n == rec.frames_written[name], name
        fixes = r.streams["gps"].time
        for name in ("emi", "gpr"):
            s = r.streams[name]
            covered = (s.time >= fixes.min()) & (s.time <= fixes.max())
            # (frames read while the recorder waited for the GPS's first fix
            # are before it: up to 1.7 s of them on a loaded machine)
            assert covered.sum() > 0.5 * len(s), (name, covered.sum(), len(s))
            assert np.isfinite(s.x[covered]).all(), name


def test_stop_waits_for_a_writer_thread_busy_in_a_detector(tmp_path, caplog):
    """A detector call still running when the recording stops (here 1.5 s,
    past the recorder's warning interval) is waited for: the final chunk and
    ``finish`` run after it ends, never beside it."""
    out = tmp_path / "busy.h5"
    rec, devices = _detecting_recorder(out, seed=6)
    rec.stop_warn_interval = 0.3
    log = []  # (event, thread, time)
    try:
        rec.start()
        worker = rec._detectors["emi"]
        process, finish = worker.detector.process, worker.detector.finish
        stopping = threading.Event()

        def slow_at_stop(*a):
            log.append(("start", threading.current_thread().name, time.monotonic()))
            if stopping.is_set() and len(log) < 4000:
                time.sleep(1.5)
            out_ = process(*a)
            log.append(("end", threading.current_thread().name, time.monotonic()))
            return out_

        def finishing():
            log.append(("finish", threading.current_thread().name, time.monotonic()))
            return finish()

        worker.detector.process = slow_at_stop
        worker.detector.finish = finishing
        rec.run(1.0)
        stopping.set()
        time.sleep(0.1)  # (the writer is inside a slow call now)
    finally:
        with caplog.at_level("WARNING", logger="demine.recorder"):
            rec.stop()
        for d in devices:
            d.stop()
    assert rec.error is None
    assert "the writer thread is still busy" in caplog.text
    writer_ends = [t for e, th, t in log if e == "end" and th != "MainThread"]
    after = [(e, t) for e, th, t in log if th == "MainThread"]
    assert after and after[-1][0] == "finish"
    assert min(t for _, t in after) >= max(writer_ends)


def test_a_failed_inline_detector_is_not_moved_to_a_thread(tmp_path):
    """The overload rule looks at the detectors that still run: one that
    failed after a busy spell is left alone (a thread would call its
    ``finish`` on broken state), and the busiest of the others moves."""
    from demine.recorder import _DetectWorker

    rec = Recorder(tmp_path / "x.h5", [DeviceSpec("emi-pi", "/dev/null")])
    errors = []
    broken = _DetectWorker("emi", object(), lambda a: None, errors.append)
    busy = _DetectWorker("gpr", object(), lambda a: None, errors.append)
    idle = _DetectWorker("em2", object(), lambda a: None, errors.append)
    broken._fail(ValueError("broken"))
    rec._detectors = {"emi": broken, "gpr": busy, "em2": idle}
    broken.busy, busy.busy, idle.busy = 2.0, 1.2, 0.1
    rec._load_since = time.monotonic() - rec.detect_busy_window - 0.1
    rec._check_detect_load()
    try:
        assert not broken.moved and not broken.threaded
        assert busy.moved and busy.threaded and not idle.moved
        broken.move_to_thread()  # (refused directly too)
        assert not broken.threaded
    finally:
        busy._queue.put(None)
        busy._thread.join(5)


def test_a_detector_thread_that_failed_is_given_no_more_chunks():
    """Once a detector in a thread of its own has raised, its thread is gone:
    nothing more is queued for it (the frames are in the file anyway)."""
    from demine.recorder import _DetectWorker

    class Broken:
        def process(self, *a):
            raise ValueError("broken")

        def finish(self):
            return {}

    errors = []
    worker = _DetectWorker("emi", Broken(), lambda alarms: None, errors.append, threaded=True)
    chunk = (np.zeros((4, 2)), np.zeros(4), np.zeros(4), np.arange(4, dtype=np.int64))
    worker.submit(*chunk)
    worker._thread.join(5)
    assert not worker._thread.is_alive() and [str(e) for e in errors] == ["broken"]
    for _ in range(5):
        worker.submit(*chunk)
    assert worker.backlog == 0
    worker.close(timeout=1.0)
    assert len(errors) == 1


def test_a_detector_thread_that_does_not_finish_in_time_is_an_error():
    """A detector in a thread of its own still busy when its time to finish
    is up: reported (its last alarms are missing), not silently dropped."""
    from demine.recorder import _DetectWorker

    class Slow:
        def process(self, *a):
            time.sleep(1.0)
            return {}

        def finish(self):
            return {}

    errors = []
    worker = _DetectWorker("emi", Slow(), lambda alarms: None, errors.append, threaded=True)
    chunk = (np.zeros((4, 2)), np.zeros(4), np.zeros(4), np.arange(4, dtype=np.int64))
    for _ in range(3):
        worker.submit(*chunk)
    worker.close(timeout=0.2)
    assert len(errors) == 1 and isinstance(errors[0], RecordingError)
    assert "'emi' had not finished when the recording was closed" in str(errors[0])


def test_a_detector_that_cannot_keep_up_inline_moves_to_a_thread(tmp_path):
    """A detector slower than real time (here: twice the time its frames
    span) would hold up the writer's passes more and more; it is moved to a
    thread of its own, the writer keeps flushing on time, and the alarms are
    still the batch ones."""
    from demine.pipeline import detect_recording

    out = tmp_path / "slow.h5"
    rec, devices = _detecting_recorder(out, seed=4, speed=4.0)
    try:
        rec.start()
        worker = rec._detectors["emi"]
        _slowed(worker, 2.0)
        deadline = time.monotonic() + 15
        while not worker.moved and time.monotonic() < deadline:
            rec.run(0.2)
        assert worker.moved
        assert "demine-detect-emi" in {t.name for t in threading.enumerate()}
        # the writer is not held up any longer: a flush every pass or two
        before = rec.writer.flush_count
        rec.run(1.0)
        assert rec.writer.flush_count - before >= 15
        assert worker.backlog > 0  # the detector is behind, in its own thread
    finally:
        rec.stop()
        for d in devices:
            d.stop()
    assert rec.error is None
    assert any("moved to a thread" in n for n in rec.processing_notes)
    with Recording(out) as r:
        live = r.alarms
    batch = detect_recording(out)
    assert len(live["x"]) == len(batch["x"])
    order = np.argsort(live["time"], kind="stable")
    np.testing.assert_array_equal(live["time"][order], batch["time"])


def _slowed(worker, factor):
    """Make a detector take ``factor`` times the time its frames span."""
    process = worker.detector.process

    def slow(samples, x, y, t):
        time.sleep(factor * 1e-9 * float(t[-1] - t[0]) if len(t) > 1 else 0.0)
        return process(samples, x, y, t)

    worker.detector.process = slow


def test_detectors_that_together_hold_up_the_writer_lose_the_busiest_to_a_thread(tmp_path):
    """Two detectors each below the limit but together above it: the busier
    one moves to a thread, the other stays in the writer thread."""
    out = tmp_path / "two.h5"
    rec, devices = _detecting_recorder(out, seed=5, kinds=("emi-pi", "gpr", "nmea"))
    # every move: the window's span, the inline detectors' busy time in it,
    # who moved, and the time gpr's calls took in it (timed by the test)
    moves: list[tuple[float, dict[str, float], set[str], float]] = []
    calls: list[tuple[float, float]] = []
    try:
        rec.start()
        workers = rec._detectors
        assert set(workers) == {"emi", "gpr"}
        check = rec._check_detect_load

        def logged():
            now, since = time.monotonic(), rec._load_since
            busy = {n: w.busy for n, w in workers.items() if not w.threaded and not w.failed}
            before = {n for n, w in workers.items() if w.moved}
            check()
            moved = {n for n, w in workers.items() if w.moved} - before
            if moved:
                gpr = sum(e - max(s, since) for s, e in calls if e > since)
                moves.append((now - since, busy, moved, gpr))

        rec._check_detect_load = logged
        _slowed(workers["emi"], 0.45)
        _slowed(workers["gpr"], 0.2)
        process = workers["gpr"].detector.process

        def timed(*a):  # (the test's own count of gpr's time, not the recorder's)
            start = time.monotonic()
            try:
                return process(*a)
            finally:
                calls.append((start, time.monotonic()))

        workers["gpr"].detector.process = timed
        deadline = time.monotonic() + 20
        while not any(w.moved for w in workers.values()) and time.monotonic() < deadline:
            rec.run(0.2)
        rec.run(2 * rec.detect_busy_window + 0.5)  # the other one is not moved later
    finally:
        rec.stop()
        for d in devices:
            d.stop()
    assert rec.error is None
    # the busier one moved first, and alone, when the two together were over the limit
    span, busy, moved, _ = moves[0]
    assert moved == {"emi"} and busy["emi"] > busy["gpr"], moves
    assert busy["emi"] + busy["gpr"] > rec.detect_max_busy * span, moves
    # The other one stays in the writer thread: its 0.2 is far below the limit
    # on its own.  Its busy time is wall time, though, and on a loaded host its
    # own work can take it over the limit (2 cores under load: moved too in
    # 1 run of 8, and in every run with 5 busy processes).  Then, and only
    # then, it may move: its calls, as the test timed them, took that share
    # of the window on their own.
    for span, busy, moved, gpr in moves[1:]:
        assert moved == {"gpr"} and set(busy) == {"gpr"}, moves
        assert busy["gpr"] > rec.detect_max_busy * span, moves
        assert gpr > 0.9 * rec.detect_max_busy * span, moves
    assert workers["emi"].moved and workers["gpr"].moved == (len(moves) == 2), moves
    assert [n for n in rec.processing_notes if "moved to a thread" in n] == [
        f"{name}: detection could not keep up in the writer thread (more than "
        f"{rec.detect_max_busy:.0%} of the time): moved to a thread of its own"
        for name in ("emi", "gpr")[:len(moves)]]


def _undeclared_pulse_recorder(tmp_path, out):
    """A recorder with live detection (not started yet) on simulated devices
    (started): a detector with a 150 µs pulse over viscous laterite, the pulse
    not declared in the stream's calibration, and a GPS."""
    from importlib import resources

    from demine.simulate import SimulatedDevice, load_scene

    text = (resources.files("demine.simulate") / "scenes" / "magnetic-laterite.toml").read_text()
    scene_file = tmp_path / "laterite-pulse.toml"
    scene_file.write_text(text.replace("coil_radius = 0.12\n",
                                       "coil_radius = 0.12\npulse_length = 150e-6\n", 1))
    scene = load_scene(scene_file)
    assert scene.emi.pulse_length == 150e-6
    # (at 4 times real time the devices' default backlog, 0.1 s, held 0.4 s of
    # the lane's readings: a clean-clone CI run once found 1240 readings, 0.3 s
    # of the lane, missing at the file's opening, which a stall of the host that
    # long makes such a device drop; with 5 s a drop would need a stall of 20 s,
    # and a gap with nothing dropped is the recorder's)
    devices = [SimulatedDevice(d, scene, seed=2, duration=25.0, speed=4.0, max_backlog=5.0)
               for d in ("emi-pi", "nmea")]
    for d in devices:
        d.start()
    cal = {"gate_times": scene.gate_times.tolist(), "coil_radius": 0.12}
    rec = Recorder(out, [DeviceSpec(d.driver_name, d.port, calibration=cal)
                         for d in devices],
                   frame=LocalFrame(scene.anchor_lon, scene.anchor_lat, scene.anchor_alt),
                   detect=True, flush_interval=0.2)
    return rec, devices


def test_live_ground_balance_finds_an_undeclared_pulse_as_batch_does(tmp_path, caplog):
    """A detector with a 150 µs pulse over viscous laterite, its pulse not
    declared: the live chain finds it at the same reading as the batch one, the
    alarms are the same, and the recorder says what it found when it stops."""
    import logging

    from demine.pipeline import detect_recording

    out = tmp_path / "live.h5"
    rec, devices = _undeclared_pulse_recorder(tmp_path, out)
    try:
        with caplog.at_level(logging.INFO, logger="demine.recorder"):
            rec.start()
            soil = rec._detectors["emi"].detector.chain.steps[0]
            for d in devices:
                assert d.wait(timeout=60)
            time.sleep(0.5)
            rec.stop()
    finally:
        rec.stop()
        for d in devices:
            d.stop()
    found = soil.found_pulse
    assert found is not None and found[0] == pytest.approx(150e-6, rel=0.1)
    assert "a transmitter pulse of" in caplog.text
    with Recording(out) as r:
        live = r.alarms
    notes: list[str] = []
    batch = detect_recording(out, notes=notes)
    # the same pulse from the same reading
    assert notes == rec.processing_notes == [f"emi: {n}" for n in soil.notes()]
    assert rec.alarms_written == len(live["x"]) == len(batch["x"]) > 0
    order = np.argsort(live["time"], kind="stable")
    np.testing.assert_array_equal(live["time"][order], batch["time"])
    np.testing.assert_allclose(live["x"][order], batch["x"], rtol=1e-9)
    np.testing.assert_allclose(live["score"][order], batch["score"], rtol=1e-6)


def _sigint_default() -> None:
    # A shell starting a command in the background (nohup, `cmd &` in a script,
    # some CI runners) makes it ignore SIGINT, and children inherit that: Python
    # then installs no KeyboardInterrupt handler and Ctrl-C never reaches the
    # recorder.  The recorder under test gets a terminal's Ctrl-C as it would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


#: ``demine`` whose Recorder.stop is sent a SIGTERM as it begins (a service
#: manager repeating its signal while the recording is being closed).
_TERM_WHILE_STOPPING = """
import os, signal, sys
from demine.recorder import Recorder
stop = Recorder.stop
def stop_under_sigterm(self):
    os.kill(os.getpid(), signal.SIGTERM)
    return stop(self)
Recorder.stop = stop_under_sigterm
from demine.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sig,twice", [(signal.SIGTERM, False), (signal.SIGINT, False),
                                       (signal.SIGTERM, True)],
                         ids=["sigterm", "ctrl-c", "sigterm-again-while-stopping"])
def test_sigterm_and_ctrl_c_stop_cleanly(tmp_path, sig, twice):
    m, s, path = _pty()
    out = tmp_path / "stopped.h5"
    emi = get_driver("emi-pi")
    cmd = ["-c", _TERM_WHILE_STOPPING] if twice else ["-m", "demine"]
    proc = subprocess.Popen([sys.executable, *cmd, "record", "--device",
                             f"emi-pi={path}", "--out", str(out), "--flush-interval", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_default)
    sent = 0
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not out.exists():
            block = np.arange(sent, sent + 50)
            _write_all(m, emi.encode_arrays(block, block * 1000,
                                            np.ones((50, 8), "f4")))
            sent += 50
            time.sleep(0.02)
        for _ in range(20):  # a little more once the file exists
            block = np.arange(sent, sent + 50)
            _write_all(m, emi.encode_arrays(block, block * 1000, np.ones((50, 8), "f4")))
            sent += 50
            time.sleep(0.02)
        time.sleep(0.3)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        os.close(m)
        os.close(s)
    assert proc.returncode == 0, stderr
    # the summary comes first, its notes after it (these 8-gate frames do not
    # fit the shipped 16-gate profile)
    lines = stdout.splitlines()
    assert lines[0].startswith("stopped:"), stdout
    assert len(lines) > 1 and all(ln.startswith("  note: ") for ln in lines[1:]), stdout
    with Recording(out) as r:
        seq = r.streams["emi"].sequence
        # everything the reader received before the signal is in the file
        assert seq[-1] == sent - 1
        np.testing.assert_array_equal(seq, seq[0] + np.arange(seq.size))


def test_notes_survive_a_recording_that_stops_on_an_error(tmp_path):
    """What the chains decided is collected when the recording stops on an
    error too: the disk fills (the writer's reserve raised past the free space)
    after the live ground balance found an undeclared pulse; the recorder stops
    with the writer's error, keeps the note, and the file holds what was
    flushed."""
    out = tmp_path / "full.h5"
    rec, devices = _undeclared_pulse_recorder(tmp_path, out)
    try:
        rec.start()
        soil = rec._detectors["emi"].detector.chain.steps[0]
        deadline = time.monotonic() + 60
        while soil.found_pulse is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert soil.found_pulse is not None
        # the disk is full from now on: the next flush refuses to write
        rec.writer.min_free_bytes = 1 << 62
        deadline = time.monotonic() + 30
        while rec.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        rec.stop()
    finally:
        rec.stop()
        for d in devices:
            d.stop()
    assert isinstance(rec.error, RecordingError) and "disk full" in str(rec.error)
    assert rec.processing_notes == [f"emi: {n}" for n in soil.notes()]
    assert any("transmitter pulse" in n for n in rec.processing_notes)
    assert [d.bytes_dropped for d in devices] == [0, 0]
    with Recording(out) as r:  # what was flushed before the disk filled
        seq = r.streams["emi"].sequence
        assert seq.size > 0
        np.testing.assert_array_equal(seq, seq[0] + np.arange(seq.size))
