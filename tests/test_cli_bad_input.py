"""Bad input to ``demine record``, ``import`` and ``export``: one line, status 2, no file."""

from __future__ import annotations

import pytest
from test_evaluate_cli import _write

from demine.cli import main
from demine.control import parse_address
from demine.errors import ConfigError


def _one_error_line(capsys, command):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"demine {command}: error: "), err
    return err


@pytest.fixture
def binary(tmp_path):
    path = tmp_path / "random.bin"
    path.write_bytes(bytes(range(128, 256)) * 16)  # not UTF-8 from the first byte
    return path


def _record(tmp_path, *extra):
    return ["record", "--device", "emi-pi=/nonexistent/port", "--out",
            str(tmp_path / "r.h5"), "--quiet", *extra]


def test_record_truth_not_text(tmp_path, capsys, binary):
    assert main(_record(tmp_path, "--truth", str(binary))) == 2
    err = _one_error_line(capsys, "record")
    assert "random.bin: not a text CSV file" in err
    assert not (tmp_path / "r.h5").exists()


@pytest.mark.parametrize("address, says", [
    ("127.0.0.1:99999", "port must be 0 to 65535, got 99999"),
    ("127.0.0.1:65536", "port must be 0 to 65535, got 65536"),
    ("127.0.0.1:http", "port is not a number"),
])
def test_record_control_address_checked_before_anything_is_created(tmp_path, capsys,
                                                                   address, says):
    assert main(_record(tmp_path, "--control", address)) == 2
    err = _one_error_line(capsys, "record")
    assert repr(address) in err and says in err
    assert not (tmp_path / "r.h5").exists()
    with pytest.raises(ConfigError, match=says):
        parse_address(address)


def test_control_address_port_range():
    assert parse_address("127.0.0.1:0")[1] == ("127.0.0.1", 0)
    assert parse_address(":65535")[1] == ("127.0.0.1", 65535)


@pytest.mark.parametrize("value, says", [("-1", "must be > 0, got -1.0"),
                                         ("0", "must be > 0, got 0.0"),
                                         ("nan", "must be finite, got nan")])
def test_record_duration_must_be_positive(tmp_path, capsys, value, says):
    assert main(_record(tmp_path, "--duration", value)) == 2
    err = _one_error_line(capsys, "record")
    assert "'--duration'" in err and says in err
    assert not (tmp_path / "r.h5").exists()


def test_import_truth_not_text(tmp_path, capsys, binary):
    assert main(["import", str(tmp_path / "some.DZT"), "--out", str(tmp_path / "o.h5"),
                 "--truth", str(binary)]) == 2
    err = _one_error_line(capsys, "import")
    assert "random.bin" in err
    assert not (tmp_path / "o.h5").exists()


def test_export_alarms_not_text(tmp_path, capsys, binary):
    rec = _write(tmp_path / "lane.h5")
    assert main(["export", str(rec), "--out", str(tmp_path / "x.geojson"),
                 "--alarms", str(binary)]) == 2
    err = _one_error_line(capsys, "export")
    assert "random.bin: not a text CSV file" in err
