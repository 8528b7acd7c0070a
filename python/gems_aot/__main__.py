"""python -m gems_aot info | demo"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gems_aot")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="versions, targets, kernel counts, device support")
    p_info.add_argument("--json", action="store_true")
    sub.add_parser("demo", help="run a few ops through gems on the GPU and compare with ATen")
    args = parser.parse_args(argv)

    import gems_aot
    from gems_aot._info import format_info

    if args.command == "info":
        data = gems_aot.info()
        print(json.dumps(data, indent=1) if args.json else format_info(data))
        return 0
    from gems_aot._demo import run

    return run()


if __name__ == "__main__":
    sys.exit(main())
