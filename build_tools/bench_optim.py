"""Fused AdamW benchmark: one torch.optim.AdamW(fused=True) step with gems' multi-tensor kernel
against ATen's fused kernel and against torch's default AdamW step (the foreach ops), in the same run.

  python build_tools/bench_optim.py --out DIR [--dtypes bf16,fp32] [--amsgrad]

The parameter set is the Llama of `python -m gems_aot models --speed` (hidden 2048, 8 layers, 16 / 4
heads, SwiGLU width 5632, vocabulary 32000, untied lm_head: the shapes of gems_aot._models.TinyLlama
built on the meta device), in bf16 and in fp32, with random grads. Per dtype: device ms of a whole
optimizer step (do_bench median; torch.optim's step-count increment included, the same on both
sides) and of the aten::_fused_adamw_ call alone, the GB/s of that call (bytes of params, grads and
states read and written once), and host µs per step with the same list structure at one element per
tensor (what the step costs the CPU). Writes bench_optim.json and bench_optim.md; prints the table.
Target: gems at least as fast as ATen (speed-up >= 1.0) on device time.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import torch

import gems_aot
from gems_aot._bench import device_ms
from gems_aot._models import DecoderConfig, TinyLlama

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from aot.family_multi_tensor import OVERLOADS  # noqa: E402
from build_tools.bench import host_us  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
LLAMA = DecoderConfig(vocab_size=32000, hidden=2048, layers=8, heads=16, kv_heads=4, intermediate=5632,
                      max_positions=2048)


def llama_shapes() -> list:
    with torch.device("meta"):
        return [tuple(p.shape) for p in TinyLlama(LLAMA).parameters()]


def optimizer(shapes, dtype, amsgrad, fused=True):
    params = [torch.nn.Parameter(torch.randn(s, device="cuda", dtype=dtype) * 0.02) for s in shapes]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    # fused=None: torch's default path for CUDA parameters, the foreach ops.
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1, fused=fused or None, amsgrad=amsgrad)
    opt.step()  # creates the state
    return opt


def fused_call(opt):
    """aten::_fused_adamw_ on the optimizer's lists, as torch.optim calls it (without the steps'
    increment)."""
    group = opt.param_groups[0]
    params = group["params"]
    state = [opt.state[p] for p in params]
    lists = [params, [p.grad for p in params], [s["exp_avg"] for s in state], [s["exp_avg_sq"] for s in state],
             [s["max_exp_avg_sq"] for s in state] if group["amsgrad"] else [], [s["step"] for s in state]]
    beta1, beta2 = group["betas"]

    def call():
        torch._fused_adamw_(*lists, lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
                            eps=group["eps"], amsgrad=group["amsgrad"], maximize=False)

    return call


def timed(fn, gems: bool):
    def run():
        with gems_aot.use_gems(include=list(OVERLOADS) if gems else []):
            fn()

    return run


def measure(shapes, dtype, amsgrad) -> dict:
    row = {}
    opt = optimizer(shapes, dtype, amsgrad, fused=False)
    row["foreach_step_ms"] = device_ms([timed(opt.step, False)], warmup=20, rep=200)
    del opt
    torch.cuda.empty_cache()
    opt = optimizer(shapes, dtype, amsgrad)
    call = fused_call(opt)
    numel = sum(p.numel() for p in opt.param_groups[0]["params"])
    arrays = 9 if amsgrad else 7  # param, grad, exp_avg, exp_avg_sq (, max) read; all but grad written
    row.update(tensors=len(shapes), params=numel)
    for side in ("aten", "gems"):
        gems = side == "gems"
        row[f"{side}_step_ms"] = device_ms([timed(opt.step, gems)], warmup=50, rep=500)
        row[f"{side}_call_ms"] = device_ms([timed(call, gems)], warmup=50, rep=500)
        row[f"{side}_call_gbs"] = arrays * numel * dtype.itemsize / row[f"{side}_call_ms"] / 1e6
    del opt, call
    torch.cuda.empty_cache()
    tiny = optimizer([(1,)] * len(shapes), dtype, amsgrad)
    for side in ("aten", "gems"):
        row[f"{side}_host_us"] = host_us(timed(tiny.step, side == "gems"), calls=500)
    row["step_speedup"] = row["aten_step_ms"] / row["gems_step_ms"]
    row["speedup_vs_foreach"] = row["foreach_step_ms"] / row["gems_step_ms"]
    row["call_speedup"] = row["aten_call_ms"] / row["gems_call_ms"]
    return row


def table(results: dict) -> str:
    lines = ["| dtype | tensors | params | step ms ATen foreach | step ms ATen | step ms gems | speed-up | vs foreach | "
             "call ms ATen | call ms gems | call speed-up | GB/s ATen | GB/s gems | host µs ATen | host µs gems |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['tensors']} | {r['params'] / 1e6:.0f}M | {r['foreach_step_ms']:.3f} | "
                     f"{r['aten_step_ms']:.3f} | {r['gems_step_ms']:.3f} | {r['step_speedup']:.3f} | "
                     f"{r['speedup_vs_foreach']:.2f} | {r['aten_call_ms']:.3f} | "
                     f"{r['gems_call_ms']:.3f} | {r['call_speedup']:.3f} | {r['aten_call_gbs']:.0f} | "
                     f"{r['gems_call_gbs']:.0f} | {r['aten_host_us']:.1f} | {r['gems_host_us']:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("."))
    parser.add_argument("--dtypes", default="bf16,fp32")
    parser.add_argument("--amsgrad", action="store_true")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench_optim.py needs a CUDA GPU")
    shapes = llama_shapes()
    results = {}
    for name in args.dtypes.split(","):
        gems_aot.reset_fallback_counts()
        results[name + ("_amsgrad" if args.amsgrad else "")] = measure(shapes, DTYPES[name], args.amsgrad)
        fallbacks = gems_aot.fallback_counts()
        if fallbacks:
            sys.exit(f"gems fell back to ATen: {fallbacks}")
    text = table(results)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}\n{text}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_optim.json").write_text(json.dumps({"device": torch.cuda.get_device_name(),
                                                           "torch": torch.__version__, "results": results}, indent=1))
    (args.out / "bench_optim.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
