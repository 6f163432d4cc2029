"""Fast fuzz subset of the vendor readers (the long run is tests/fuzz/fuzz_readers.py).

Random mutations and truncations of real seed files (header, data or sidecar) must
give either a RadarData or demine.errors.VendorFormatError naming the file: never
another exception, and never a sample array larger than the files read.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_SPEC = importlib.util.spec_from_file_location(
    "fuzz_readers", Path(__file__).parent / "fuzz" / "fuzz_readers.py"
)
fuzz_readers = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fuzz_readers)

# (removed when the test process ends: every run used to leave one behind)
_TMPDIR = tempfile.TemporaryDirectory(prefix="demine-fuzz-seeds-")
SEEDS = fuzz_readers.make_seeds(Path(_TMPDIR.name))


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
    return {name: tmp_path_factory.mktemp(f"fz-{name}") for name in SEEDS}


@pytest.mark.parametrize("reader", sorted(SEEDS))
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rng=st.randoms(use_true_random=False))
def test_mutated_files_raise_only_documented_errors(workdirs, reader, rng):
    outcome, detail = fuzz_readers.run_case(workdirs[reader], SEEDS[reader], rng)
    assert outcome != "FAIL", detail


def test_unmutated_seeds_read(workdirs):
    from demine import io

    for reader, files in SEEDS.items():
        d = workdirs[reader]
        for p in d.iterdir():
            p.unlink()
        for name, data in files.items():
            (d / name).write_bytes(data)
        rd = io.read(d / next(iter(files)))
        assert rd.n_traces > 0, reader
