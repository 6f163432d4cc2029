"""The sub-commands of ``demine`` behave alike: a missing optional dependency, an
unknown option and ``--out`` are handled the same way by every one of them, and
``demine evaluate --score p_mine`` refuses alarms that were never scored."""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap

import pytest
from test_evaluate_cli import _write

from demine.cli import OPTIONAL_MODULES, _missing_extra, build_parser, main


def _subparsers(parser: argparse.ArgumentParser, prog: str = "demine"):
    """Every (sub-)parser under ``parser``, with its name as typed after ``demine``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prog} {name}", sub
                yield from _subparsers(sub, f"{prog} {name}")


# ----------------------------------------------------------- missing optional extras


def _without(modules, argv, cwd):
    """Run ``demine ARGV`` in a child process in which ``modules`` cannot be imported."""
    code = textwrap.dedent(f"""
        import sys
        for name in {list(modules)!r}:
            sys.modules[name] = None  # (import of it: ModuleNotFoundError)
        from demine.cli import main
        sys.exit(main({list(argv)!r}))
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.mark.parametrize("modules, argv, extra", [
    (["dask", "distributed"], ["batch", "lane.h5", "-o", "out"], "campaign"),
    (["pyarrow"], ["batch", "lane.h5", "-o", "out"], "campaign"),
    (["matplotlib", "matplotlib.pyplot"], ["report", "lane.h5", "-o", "out"], "plot"),
    (["matplotlib", "matplotlib.pyplot"],
     ["evaluate", "lane.h5", "--roc-plot", "roc.png"], "plot"),
    (["textual", "textual.app"], ["console", "lane.h5"], "console"),
])
def test_a_missing_extra_is_one_error_line_not_a_traceback(tmp_path, modules, argv, extra):
    _write(tmp_path / "lane.h5")
    proc = _without(modules, argv, tmp_path)
    command = argv[0]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"demine {command}: error: "), proc.stderr
    assert f"pip install 'demine[{extra}]'" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_only_optional_dependencies_become_an_error_line():
    # a bare import of an optional module, deeper in the code, names its extra
    exc = ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib.colors")
    assert _missing_extra(exc) == ("matplotlib is not installed (an optional dependency): "
                                   "pip install 'demine[plot]'")
    assert OPTIONAL_MODULES["dask"] == "campaign"
    # anything else (a broken installation, a bug) keeps its traceback
    assert _missing_extra(ModuleNotFoundError("No module named 'numpy'", name="numpy")) is None
    assert _missing_extra(ImportError("cannot import name 'x' from 'demine.emi'")) is None


# ------------------------------------------------------------------------- -o


def test_every_out_option_has_the_short_form_o():
    parsers = dict(_subparsers(build_parser()))
    with_out = []
    for prog, sub in parsers.items():
        for action in sub._actions:
            if "--out" in action.option_strings:
                with_out.append(prog)
                assert "-o" in action.option_strings, f"{prog}: --out without -o"
    assert {"demine import", "demine simulate", "demine demo", "demine record",
            "demine calibrate pulse"} <= set(with_out)


@pytest.mark.parametrize("argv", [["import", "a.DZT", "-o", "x.h5"],
                                  ["simulate", "demo-lane", "-o", "x.h5"],
                                  ["demo", "-o", "x.h5"]])
def test_o_is_out(argv):
    args = build_parser().parse_args(argv)
    assert str(args.out) == "x.h5"


def test_simulate_writes_to_o(tmp_path, capsys):
    out = tmp_path / "lane.h5"
    assert main(["simulate", "demo-lane", "-o", str(out), "--duration", "2"]) == 0
    assert out.exists() and "demo-lane" in capsys.readouterr().out


# ---------------------------------------------------------------- unknown options


@pytest.mark.parametrize("argv, prog", [
    (["info", "{lane}", "-x"], "demine info"),
    (["evaluate", "{lane}", "--no-such-option"], "demine evaluate"),
    (["calibrate", "null", "{lane}", "-o", "{tmp}/p.toml", "--bogus", "1"],
     "demine calibrate null"),
    (["import", "{lane}", "-o", "{tmp}/x.h5", "-x"], "demine import"),
    (["demo", "-x"], "demine demo"),
    (["drivers", "--bogus"], "demine drivers"),
])
def test_an_unknown_option_is_reported_by_its_sub_command(tmp_path, capsys, argv, prog):
    lane = _write(tmp_path / "lane.h5")
    argv = [a.format(lane=lane, tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    unknown = " ".join(argv[argv.index(next(a for a in argv if a in
                                            ("-x", "--no-such-option", "--bogus"))):])
    assert err.startswith(f"usage: {prog} "), err  # (its usage, not demine's)
    assert err.splitlines()[-1] == f"{prog}: error: unrecognized arguments: {unknown}"
    assert not (tmp_path / "p.toml").exists() and not (tmp_path / "x.h5").exists()


def test_an_unknown_option_without_a_command_is_reported_by_demine(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["-x"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == \
        "demine: error: unrecognized arguments: -x"


# ------------------------------------------------------------------ exit status


def test_help_lists_the_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert ("Exit status: 0 success; 1 the work ran but something failed (a file of a "
            "batch, a probe that decoded no frame, a recorder or simulator that the console "
            "started), or an unexpected internal error (with a traceback); 2 usage or input "
            "error; 130 interrupted (Ctrl-C); 141 the reader of the output went away") in text
    assert main([]) == 2  # (no command: usage)


# --------------------------------------------------------- evaluate --score p_mine


@pytest.fixture(scope="module")
def detected(tmp_path_factory):
    """A simulated lane whose alarms `demine detect --write` wrote, without a model."""
    lane = tmp_path_factory.mktemp("lane") / "lane.h5"
    assert main(["simulate", "demo-lane", "--out", str(lane), "--duration", "15"]) == 0
    assert main(["detect", str(lane), "--write"]) == 0
    return lane


def test_evaluate_refuses_p_mine_that_no_model_wrote(detected, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(detected), "--score", "p_mine"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("demine evaluate: error: "), err
    assert (f"{detected}: alarms have no p_mine values; use --model default (or MODEL) "
            "to score them") in err
    # the alarms' own score still evaluates
    assert main(["evaluate", str(detected), "--json"]) == 0


def test_evaluate_refuses_a_partly_empty_score_column_naming_it(detected, tmp_path, capsys):
    csv = tmp_path / "alarms.csv"
    assert main(["detect", str(detected), "-o", str(csv)]) == 0
    lines = csv.read_text().splitlines()
    head = lines[0].split(",")
    assert "p_mine" in head and len(lines) > 3
    rows = [line.split(",") for line in lines[1:]]
    for i, row in enumerate(rows):  # p_mine for every other alarm only
        row[head.index("p_mine")] = "0.5" if i % 2 else ""
    csv.write_text("\n".join(",".join(r) for r in [head, *rows]) + "\n")
    capsys.readouterr()
    assert main(["evaluate", str(detected), "--alarms", str(csv), "--score", "p_mine"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    n, k = len(rows), (len(rows) + 1) // 2
    assert f"alarms column 'p_mine' (used as score) has no value for {k} of {n} alarms" in err
