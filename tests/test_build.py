"""The compiled core is really compiled, installed, and has no silent fallback."""

from __future__ import annotations

import importlib
import importlib.machinery
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNELS = sorted(p.stem for p in (ROOT / "ext").glob("_*.pyx"))


def test_there_are_kernels():
    assert "_core" in KERNELS


@pytest.mark.parametrize("name", KERNELS)
def test_every_kernel_is_a_compiled_extension(name):
    mod = importlib.import_module(f"demine.{name}")
    assert mod.__file__ is not None
    assert mod.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), mod.__file__


def test_core_checksum_is_the_standard_check_value():
    from demine import _core

    # CRC-16/CCITT-FALSE of "123456789" is 0x29B1 by definition of the algorithm.
    assert _core.crc16_ccitt(b"123456789") == 0x29B1


def test_missing_core_is_an_import_error(tmp_path):
    # Shadow the compiled core with a broken one: importing demine must fail,
    # not fall back to something slower or absent.
    import demine

    pkg = Path(demine.__file__).parent
    fake = tmp_path / "demine"
    fake.mkdir()
    for item in pkg.iterdir():
        if item.name.startswith("_core"):
            continue
        (fake / item.name).symlink_to(item)
    (fake / "_core.py").write_text("raise ImportError('compiled core did not load')\n")
    proc = subprocess.run([sys.executable, "-c", "import demine"], cwd=tmp_path,
                          capture_output=True, text=True,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode != 0
    assert "compiled core did not load" in proc.stderr


def test_package_data_installed():
    from demine.calibration import available_profiles
    from demine.drivers import available_drivers

    assert {"emi-pi", "gpr", "nmea", "ascii-md"} <= set(available_drivers())
    assert available_profiles()  # TOML profiles ship inside the wheel
