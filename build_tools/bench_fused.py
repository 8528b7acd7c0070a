"""Fused activation benchmark: silu_and_mul / gelu_and_mul against the unfused ATen sequence.

  python build_tools/bench_fused.py --out DIR [--tokens 4096] [--hidden 11008] [--dtype bf16]

x is [tokens, 2 * hidden]. Per activation (silu, gelu, gelu tanh): device time of the forward
(gems_aot.silu_and_mul(x) versus F.silu(x[..., :H]) * x[..., H:] with gems disabled) and of
forward + backward (torch.autograd.grad of the output with a fixed grad, so nothing accumulates),
rotating between two input sets larger than L2; GB/s of the fused kernels (bytes read + written
once: 3H per row forward, 5H backward); host µs per call at a tiny input. Writes
bench_fused.json and bench_fused.md; prints the table. Target: fused at least 1.5x faster
(device time) than unfused.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import torch
import torch.nn.functional as F

import gems_aot

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from build_tools.bench import device_ms, host_us  # noqa: E402

TARGET = 1.5  # fused / unfused device-time speed-up
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# (label, approximate): None is silu_and_mul.
ACTS = [("silu", None), ("gelu", "none"), ("gelu_tanh", "tanh")]


def fused(x, approximate):
    return gems_aot.silu_and_mul(x) if approximate is None else gems_aot.gelu_and_mul(x, approximate=approximate)


def unfused(x, approximate):
    H = x.shape[-1] // 2
    a, b = x[..., :H], x[..., H:]
    return (F.silu(a) if approximate is None else F.gelu(a, approximate=approximate)) * b


def forward_fn(fn, approximate):
    def make(s):
        x, _ = s

        def run():
            with torch.no_grad():
                fn(x, approximate)

        return run

    return make


def forward_backward_fn(fn, approximate):
    def make(s):
        x, grad = s
        return lambda: torch.autograd.grad(fn(x, approximate), x, grad)

    return make


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("."))
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=11008)
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="bf16")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    gems_aot.disable()  # the unfused baseline is ATen's own kernels
    dtype, M, H = DTYPES[args.dtype], args.tokens, args.hidden
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "info": gems_aot.info(),
           "shape": [M, 2 * H], "dtype": args.dtype, "target": TARGET, "acts": {}}

    sets = []
    for seed in range(2):
        g = torch.Generator(device="cuda").manual_seed(seed)
        x = torch.randn(M, 2 * H, device="cuda", generator=g).to(dtype).requires_grad_()
        grad = torch.randn(M, H, device="cuda", generator=g).to(dtype)
        sets.append((x, grad))
    tiny = [(torch.randn(16, 2 * 128, device="cuda").to(dtype).requires_grad_(), None)]
    elem = torch.empty((), dtype=dtype).element_size()
    fwd_gb, bwd_gb = 3 * M * H * elem / 1e9, 5 * M * H * elem / 1e9

    rows = []
    for label, approximate in ACTS:
        r = {}
        r["fwd_fused_ms"] = device_ms(forward_fn(fused, approximate), sets)
        with gems_aot.use_gems(include=[]):
            r["fwd_unfused_ms"] = device_ms(forward_fn(unfused, approximate), sets)
        r["fwd_bwd_fused_ms"] = device_ms(forward_backward_fn(fused, approximate), sets)
        with gems_aot.use_gems(include=[]):
            r["fwd_bwd_unfused_ms"] = device_ms(forward_backward_fn(unfused, approximate), sets)
        r["fwd_speedup"] = r["fwd_unfused_ms"] / r["fwd_fused_ms"]
        r["fwd_bwd_speedup"] = r["fwd_bwd_unfused_ms"] / r["fwd_bwd_fused_ms"]
        r["fwd_fused_gbps"] = fwd_gb / r["fwd_fused_ms"] * 1e3
        r["fwd_bwd_fused_gbps"] = (fwd_gb + bwd_gb) / r["fwd_bwd_fused_ms"] * 1e3
        small = forward_fn(fused, approximate)(tiny[0])
        r["host_fused_us"] = host_us(small, calls=2000, repeats=5)
        with gems_aot.use_gems(include=[]):
            r["host_unfused_us"] = host_us(forward_fn(unfused, approximate)(tiny[0]), calls=2000, repeats=5)
        res["acts"][label] = r
        for what, key in (("fwd", "fwd"), ("fwd+bwd", "fwd_bwd")):
            speedup = r[f"{key}_speedup"]
            rows.append((f"{label} {what}", f"{r[f'{key}_fused_ms'] * 1e3:.1f}", f"{r[f'{key}_unfused_ms'] * 1e3:.1f}",
                         f"{speedup:.2f}", f"{r[f'{key}_fused_gbps']:.0f}", f">= {TARGET}",
                         "yes" if speedup >= TARGET else "NO"))
        rows.append((f"{label} host µs/call (16x256)", f"{r['host_fused_us']:.2f}", f"{r['host_unfused_us']:.2f}",
                     f"{r['host_unfused_us'] / r['host_fused_us']:.2f}", "", "", ""))
        print("\n".join(" | ".join(row) for row in rows[-3:]), flush=True)
    res["min_speedup"] = min(min(r["fwd_speedup"], r["fwd_bwd_speedup"]) for r in res["acts"].values())
    res["meets_target"] = res["min_speedup"] >= TARGET

    header = ("case", "fused µs", "unfused ATen µs", "speed-up", "fused GB/s", "target", "ok")
    md = [(f"Device: {res['device']}, torch {res['torch']}, triton at build {res['info']['triton_at_build']}; "
           f"x [{M}, {2 * H}] {args.dtype}"), "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    verdict = "met" if res["meets_target"] else "NOT met"
    md += ["", f"min device speed-up {res['min_speedup']:.2f} (target {TARGET}): {verdict}"]
    (args.out / "bench_fused.json").write_text(json.dumps(res, indent=1))
    (args.out / "bench_fused.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
