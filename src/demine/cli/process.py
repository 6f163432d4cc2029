"""``demine process IN --config CHAIN.toml --out OUT``: run processing chains on a recording."""

from __future__ import annotations

import argparse

from .detect import CALIBRATION_HELP, calibration_items


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "process",
        help="apply processing chains (TOML) to a recording, writing derived data with history",
        description="Apply one or more processing chains to the streams of a recording. "
        "OUT receives a copy of IN plus /derived/<stream>/<chain> datasets that record every "
        "step, its parameters and the software version; IN is never modified, unless OUT is "
        "IN: then the derived datasets are added to it in place (raw streams untouched). An "
        "existing derived dataset is replaced only with --overwrite. A chain is a "
        "TOML file or the name of a packaged chain (emi_default, gpr_default).",
    )
    p.add_argument("input", metavar="IN", nargs="?", help="demine recording (.h5)")
    p.add_argument("--config", "-c", action="append", metavar="CHAIN",
                   help="chain TOML file or packaged chain name; repeat for several chains")
    p.add_argument("--out", "-o", metavar="RECORDING",
                   help="output recording (may equal IN to add derived data in place)")
    p.add_argument("--stream", action="append", metavar="NAME",
                   help="process only this stream (repeatable); default: streams of the "
                   "chain's kind")
    p.add_argument("--name", help="derived dataset name (default: the chain's name)")
    p.add_argument("--chunk", type=int, default=65536, metavar="FRAMES",
                   help="frames read per chunk, >= 1 (default 65536)")
    p.add_argument("--calibration", action="append", default=[], metavar="STREAM=PROFILE",
                   help=CALIBRATION_HELP)
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUT file or derived dataset")
    p.add_argument("--list-steps", action="store_true",
                   help="print the registered step names and exit")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .._params import check_number
    from ..errors import ConfigError, SchemaError
    from ..process import _select_streams, available_stages, load_chain, process_recording
    from ..recording import Recording, check_derived_name
    from ._paths import check_output_place

    if args.list_steps:
        print("\n".join(available_stages()))
        return 0
    if not args.input or not args.config or not args.out:
        raise ConfigError("give IN, --config CHAIN and --out OUT")
    chains = [load_chain(c) for c in args.config]
    if args.name is not None and len(chains) > 1:
        raise ConfigError("--name applies to one chain; give one --config")
    try:  # ('' had been taken as no name)
        names = [check_derived_name((c.chain_name or "processed") if args.name is None
                                    else args.name) for c in chains]
    except SchemaError as exc:
        raise ConfigError(f"--name: {exc}" if args.name is not None
                          else f"{exc} (it is the chain's name: give --name)") from None
    src = Path(args.input)
    out = Path(args.out)
    if not src.exists():
        raise ConfigError(f"{src}: no such recording")
    check_output_place(out)   # (the copy had said "[Errno 2] ... OUT.h5.tmp")
    args.chunk = check_number("process", "--chunk", args.chunk, lo=1, integer=True)
    if args.stream:
        args.stream = list(dict.fromkeys(args.stream))  # a stream named twice is one stream
    # what each chain will write, checked before OUT is touched: a chain after the
    # first adds to OUT with overwrite (OUT exists by then), which must not replace
    # a derived dataset IN already has, nor the one an earlier chain just wrote
    calibration = calibration_items(args.calibration)
    selected: list[list[str]] = []
    with Recording(src) as rec:
        existing = set(rec.derived())
        planned: dict[str, str] = {}
        for c, chain, dname in zip(args.config, chains, names, strict=True):
            selected.append(_select_streams(rec, chain, args.stream, src))
            for stream in selected[-1]:
                key = f"{stream}/{dname}"
                if key in planned:
                    raise ConfigError(f"--config {planned[key]} and --config {c} both write "
                                      f"derived {key}; give chains of different names")
                planned[key] = c
                if key in existing and not args.overwrite:
                    raise ConfigError(
                        f"{src} already holds derived {key}: not replaced (--overwrite "
                        + ("replaces it)" if out.resolve() == src.resolve() else
                           f"replaces it in {out}, which copies it; {src} is never "
                           "changed)"))
    unused = set(calibration) - {n for names in selected for n in names}
    if unused:
        raise ConfigError(f"--calibration for stream {sorted(unused)[0]!r}, which no chain "
                          "processes (" + ", ".join(sorted({n for names in selected
                                                            for n in names})) + " are)")
    for i, chain in enumerate(chains):
        # the first chain copies IN to OUT; the following ones add to OUT
        source = src if i == 0 else out
        done = process_recording(source, chain, out, streams=args.stream, name=args.name,
                                 chunk_frames=args.chunk, overwrite=args.overwrite or i > 0,
                                 calibration={k: v for k, v in calibration.items()
                                              if k in selected[i]})
        for stream, path in done.items():
            steps = f"{len(chain)} step{'' if len(chain) == 1 else 's'}"
            print(f"{out}: {stream} -> {path} ({steps}, chain "
                  f"{chain.chain_name or '(unnamed)'})")
    return 0
