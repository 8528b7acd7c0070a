"""python -m gems_aot info | demo | bench | models"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys

import torch

from gems_aot._harness import HarnessConfig, SpeedConfig, run as run_harness


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gems_aot")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="versions, targets, kernel counts, device support")
    p_info.add_argument("--json", action="store_true")
    sub.add_parser("demo", help="run a few ops and a small Llama-style model through gems on the GPU, beside ATen")
    p_bench = sub.add_parser("bench", help="every op against ATen (and FlagGems where installed): host and device time")
    p_bench.add_argument("--out", type=pathlib.Path, help="folder for bench_ops.json, bench_ops.md and the PNG plots")
    p_bench.add_argument("--ops", default="", help="comma-separated op names (default: all)")
    p_bench.add_argument("--dtypes", default="", help="comma-separated, of fp32, fp16, bf16, i32, i64, bool (default: "
                                                      "fp32 and bf16, and an integer-only op at its first dtype)")
    p_bench.add_argument("--sizes", default="", help="comma-separated element counts (16M, 4k, 1000) or rows x "
                                                     "hidden (16384x4096, norms); a matmul takes square matrices "
                                                     "of about that many elements (default: 16M, a norm's LLM "
                                                     "shapes)")
    p_bench.add_argument("--layouts", default="contiguous", help="comma-separated: contiguous, transposed "
                                                                 "(elementwise ops)")
    p_bench.add_argument("--no-flaggems", action="store_true", help="skip FlagGems even where it is installed")
    p_bench.add_argument("--family", choices=("ops", "gemm"), default="ops",
                         help="ops: every op at --sizes (default); gemm: mm and bmm against cuBLAS over the LLM "
                              "shape set (bench_gemm.json, bench_gemm.md)")
    p_bench.add_argument("--groups", default="train,decode,square,batched",
                         help="with --family gemm: of train, decode, square, batched (bmm)")
    p_models = sub.add_parser("models", help="the model harness: inference, training and coverage, gems vs ATen")
    p_models.add_argument("--out", type=pathlib.Path, help="folder for models.json, models.md and the PNG plots")
    p_models.add_argument("--models", default=",".join(HarnessConfig.models),
                          help="comma-separated, of: tiny_llama, and with transformers llama, qwen2, gpt2")
    p_models.add_argument("--steps", type=int, default=HarnessConfig.steps, help="training steps per run")
    p_models.add_argument("--speed", action="store_true",
                          help="instead: ms per training step and per prefill of a realistic-size Llama (hidden 2048, "
                               "8 layers, 4 x 1024 tokens, bf16), gems against ATen (speed.json, speed.md)")
    p_models.add_argument("--vocab", type=int, default=SpeedConfig().decoder.vocab_size,
                          help="--speed: the model's vocabulary (e.g. 128256, Llama 3's)")
    p_models.add_argument("--seq-lens", default=",".join(map(str, SpeedConfig.seq_lens)),
                          help="--speed: comma-separated tokens per sequence, 4 sequences each")
    args = parser.parse_args(argv)

    import gems_aot
    from gems_aot._info import format_info

    if args.command == "info":
        data = gems_aot.info()
        print(json.dumps(data, indent=1) if args.json else format_info(data))
        return 0
    if args.command == "bench":
        if not torch.cuda.is_available():
            print("the benchmark needs a CUDA GPU", file=sys.stderr)
            return 1
        if args.family == "gemm":
            from gems_aot._gemm_bench import run as run_gemm_bench

            run_gemm_bench(args.out, tuple(filter(None, args.groups.split(","))))
            return 0
        from gems_aot._bench import parse_size, run as run_bench

        def names(text):
            return [s for s in text.split(",") if s] or None

        try:
            run_bench(names(args.ops), names(args.dtypes), [parse_size(s) for s in names(args.sizes) or ()] or None,
                      names(args.layouts) or ["contiguous"], args.out, flaggems=not args.no_flaggems)
        except ValueError as e:
            print(e, file=sys.stderr)
            return 2
        return 0
    if args.command == "models":
        if not torch.cuda.is_available():
            print("the model harness needs a CUDA GPU", file=sys.stderr)
            return 1
        if args.speed:
            from gems_aot._harness import speed

            decoder = dataclasses.replace(SpeedConfig().decoder, vocab_size=args.vocab)
            speed(SpeedConfig(decoder=decoder, seq_lens=tuple(int(n) for n in args.seq_lens.split(",") if n)),
                  args.out)
            return 0
        cfg = HarnessConfig(models=tuple(filter(None, args.models.split(","))), steps=args.steps)
        results = run_harness(cfg, args.out)
        return 1 if any("error" in r for r in results["models"].values()) else 0
    from gems_aot._demo import run

    return run()


if __name__ == "__main__":
    sys.exit(main())
