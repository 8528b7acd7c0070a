"""python -m gems_aot info | demo | models"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import torch

from gems_aot._harness import HarnessConfig, run as run_harness


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gems_aot")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="versions, targets, kernel counts, device support")
    p_info.add_argument("--json", action="store_true")
    sub.add_parser("demo", help="run a few ops and a small Llama-style model through gems on the GPU, beside ATen")
    p_models = sub.add_parser("models", help="the model harness: inference, training and coverage, gems vs ATen")
    p_models.add_argument("--out", type=pathlib.Path, help="folder for models.json, models.md and the PNG plots")
    p_models.add_argument("--models", default=",".join(HarnessConfig.models),
                          help="comma-separated, of: tiny_llama, and with transformers llama, qwen2, gpt2")
    p_models.add_argument("--steps", type=int, default=HarnessConfig.steps, help="training steps per run")
    args = parser.parse_args(argv)

    import gems_aot
    from gems_aot._info import format_info

    if args.command == "info":
        data = gems_aot.info()
        print(json.dumps(data, indent=1) if args.json else format_info(data))
        return 0
    if args.command == "models":
        if not torch.cuda.is_available():
            print("the model harness needs a CUDA GPU", file=sys.stderr)
            return 1
        cfg = HarnessConfig(models=tuple(filter(None, args.models.split(","))), steps=args.steps)
        results = run_harness(cfg, args.out)
        return 1 if any("error" in r for r in results["models"].values()) else 0
    from gems_aot._demo import run

    return run()


if __name__ == "__main__":
    sys.exit(main())
