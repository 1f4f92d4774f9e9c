"""``python -m emulators.lex [--host H] [--port P] [--bots-dir DIR]``: run the Lex V2 runtime emulator."""

from __future__ import annotations

import argparse
from pathlib import Path

from emulators.lex.app import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulators.lex", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--bots-dir", type=Path, default=None, help="directory of bot JSON files")
    args = parser.parse_args(argv)
    run(host=args.host, port=args.port, bots_dir=args.bots_dir)


if __name__ == "__main__":
    main()
