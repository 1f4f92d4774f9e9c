"""``python -m emulators.lex [--host H] [--port P] [--bots-dir DIR ...] [--error-rate R] [--throttle-rate R]
[--latency S] [--seed N]``: run the Lex V2 emulator, optionally with an outage already injected.

``--bots-dir`` may be given several times (e.g. ``emulators/lex/bots`` and ``tests/emulators/bots``, the
PaymentsBot with short wait timings); without it the emulator serves ``emulators/lex/bots``."""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import ValidationError

from emulators.lex.app import run
from emulators.lex.faults import FaultSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulators.lex", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--bots-dir", type=Path, action="append", default=None,
                        help="directory of bot JSON files (repeatable)")
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction of runtime calls answered 500/503")
    parser.add_argument("--throttle-rate", type=float, default=0.0, help="fraction of runtime calls answered 429")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each runtime call")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault dice (reproducible runs)")
    args = parser.parse_args(argv)
    try:
        faults = FaultSettings(error_rate=args.error_rate, throttle_rate=args.throttle_rate, latency=args.latency)
    except ValidationError as exc:
        parser.error(f"bad fault setting: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}")
    run(host=args.host, port=args.port, bots_dir=args.bots_dir, faults=faults, seed=args.seed)


if __name__ == "__main__":
    main()
