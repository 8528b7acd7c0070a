"""`python -m gems_aot bench --family gemm`: TFLOP/s of gems' matmuls against cuBLAS over the
GEMM shape set (_gemm_shapes.py), measured in one run on one card.

Per case, three figures (do_bench medians, L2 flushed before each call):
  cublas  torch.mm (torch.bmm for the batched group) with gems off;
  kernel  torch.ops.gems.mm (torch.ops.gems.bmm): gems' kernel, whatever the tuning table's routing says;
  public  torch.mm (torch.bmm) after enable(): what a user gets (ATen's kernel where the table routes to it).
The summary gives geometric means of kernel / cuBLAS over the training shapes (forward and both
gradients), over all of them and over those gems serves (not routed), the decode, square and
batched groups, fp32 under tf32, and the cliff check: every uneven case's ratio against its
aligned neighbour's. Writes bench_gemm.json and bench_gemm.md.
"""

from __future__ import annotations

import json
import math
import pathlib
import sys

import torch

from gems_aot import _gemm_shapes as shapes

CLIFF_TOLERANCE = 0.10  # an uneven case may lose at most this share of its neighbour's ratio


def _ms(fn) -> float:
    from triton.testing import do_bench

    return do_bench(fn, warmup=10, rep=40, return_mode="median")


def _geomean(values) -> float:
    values = [v for v in values if v and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def _ops(case):
    """(the op's name for enable(), the torch function, gems' op) of a case: mm, or bmm."""
    if case.batch is None:
        return "mm", torch.mm, torch.ops.gems.mm
    return "bmm", torch.bmm, torch.ops.gems.bmm


def _routed(case, dtype) -> bool:
    """Whether the public path runs ATen for this case (the fallback counter says so)."""
    import gems_aot

    name, public, _ = _ops(case)
    a, b = shapes.operands(case, dtype)
    gems_aot.reset_fallback_counts()
    with gems_aot.use_gems(include=[name]):
        public(a, b)
    return bool(gems_aot.fallback_counts())


def measure(case, dtype) -> dict:
    import gems_aot

    name, public_op, gems_op = _ops(case)
    a, b = shapes.operands(case, dtype)
    with gems_aot.use_gems(include=[]):
        cublas = _ms(lambda: public_op(a, b))
    kernel = _ms(lambda: gems_op(a, b))
    with gems_aot.use_gems(include=[name]):
        public = _ms(lambda: public_op(a, b))
    tflops = lambda ms: case.flop / ms / 1e9  # noqa: E731
    return {"group": case.group, "name": case.name, "batch": case.batch, "m": case.m, "n": case.n, "k": case.k,
            "layout": case.layout, "dtype": str(dtype).removeprefix("torch."), "neighbour": case.neighbour,
            "cublas_tflops": tflops(cublas), "kernel_tflops": tflops(kernel), "public_tflops": tflops(public),
            "kernel_vs_cublas": cublas / kernel, "public_vs_cublas": cublas / public,
            "routed_to_aten": _routed(case, dtype)}


def _shape(r) -> str:
    return "x".join(map(str, ((r["batch"],) if r.get("batch") else ()) + (r["m"], r["n"], r["k"])))


def summarize(rows) -> dict:
    bf16 = [r for r in rows if r["dtype"] == "bfloat16"]
    train = [r for r in bf16 if r["group"] == "train"]
    served = [r for r in train if not r["routed_to_aten"]]
    batched = [r for r in bf16 if r["group"] == "batched"]
    by_key = {(r.get("batch"), r["m"], r["n"], r["k"], r["layout"], r["dtype"]): r for r in rows}
    cliffs = []
    for r in rows:
        if r["neighbour"]:
            n = by_key.get((r.get("batch"), *r["neighbour"], r["layout"], r["dtype"]))
            if n:
                change = r["kernel_vs_cublas"] / n["kernel_vs_cublas"] - 1
                cliffs.append({"name": r["name"], "shape": _shape(r),
                               "neighbour": _shape(dict(r, **dict(zip("mnk", r["neighbour"])))), "change": change})
    return {
        "train_kernel_vs_cublas": _geomean(r["kernel_vs_cublas"] for r in train),
        "train_public_vs_cublas": _geomean(r["public_vs_cublas"] for r in train),
        "train_served_kernel_vs_cublas": _geomean(r["kernel_vs_cublas"] for r in served),
        "train_min_served": min((r["kernel_vs_cublas"] for r in served), default=float("nan")),
        "train_served_share": len(served) / max(len(train), 1),
        "decode_kernel_vs_cublas": _geomean(r["kernel_vs_cublas"] for r in bf16 if r["group"] == "decode"),
        "square_kernel_vs_cublas": {f"{r['m']}": r["kernel_vs_cublas"] for r in bf16 if r["group"] == "square"},
        "batched_kernel_vs_cublas": _geomean(r["kernel_vs_cublas"] for r in batched),
        "batched_public_vs_cublas": _geomean(r["public_vs_cublas"] for r in batched),
        "fp32_tf32_kernel_vs_cublas": _geomean(r["kernel_vs_cublas"] for r in rows if r["dtype"] == "float32"),
        "routed_share_all": sum(r["routed_to_aten"] for r in bf16) / max(len(bf16), 1),
        "cliffs_beyond_tolerance": [c for c in cliffs if c["change"] < -CLIFF_TOLERANCE],
        "cliffs_checked": len(cliffs),
    }


def markdown(rows, summary, meta) -> str:
    lines = [f"# gems mm and bmm against cuBLAS: {meta['device']}, torch {meta['torch']}", "",
             "| case | shape ([batch x] MxNxK) | layout | dtype | cuBLAS TFLOP/s | gems kernel | kernel / cuBLAS | "
             "public path / cuBLAS | routed to ATen |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {_shape(r)} | {r['layout']} | {r['dtype']} | "
                     f"{r['cublas_tflops']:.0f} | {r['kernel_tflops']:.0f} | {r['kernel_vs_cublas']:.3f} | "
                     f"{r['public_vs_cublas']:.3f} | {'yes' if r['routed_to_aten'] else ''} |")
    s = summary
    lines += ["", "| summary | value |", "|---|---|",
              f"| training shapes, kernel / cuBLAS (geomean, all) | {s['train_kernel_vs_cublas']:.3f} |",
              f"| training shapes, kernel / cuBLAS (geomean, gems-served) | {s['train_served_kernel_vs_cublas']:.3f} |",
              f"| training shapes, lowest gems-served | {s['train_min_served']:.3f} |",
              f"| training shapes, public path / cuBLAS (geomean) | {s['train_public_vs_cublas']:.3f} |",
              f"| training shapes served by gems | {100 * s['train_served_share']:.0f}% |",
              f"| decode, kernel / cuBLAS (geomean) | {s['decode_kernel_vs_cublas']:.3f} |",
              f"| batched (bmm), kernel / cuBLAS (geomean) | {s['batched_kernel_vs_cublas']:.3f} |",
              f"| batched (bmm), public path / cuBLAS (geomean) | {s['batched_public_vs_cublas']:.3f} |",
              f"| fp32 (tf32), kernel / cuBLAS (geomean) | {s['fp32_tf32_kernel_vs_cublas']:.3f} |",
              f"| cases routed to ATen | {100 * s['routed_share_all']:.0f}% |",
              f"| uneven cases more than {CLIFF_TOLERANCE:.0%} below their aligned neighbour | "
              f"{len(s['cliffs_beyond_tolerance'])} of {s['cliffs_checked']} |"]
    lines += [f"| squares {k}: kernel / cuBLAS | {v:.3f} |" for k, v in s["square_kernel_vs_cublas"].items()]
    return "\n".join(lines) + "\n"


def run(out: pathlib.Path | None, groups=shapes.GROUPS) -> dict:
    import triton

    cases = shapes.cases(groups)
    # fp32 under tf32 (as allow_tf32 sets it): the squares and the realistic Llama's layers.
    fp32 = [c for c in cases if c.group == "square" or (c.group == "train" and c.name.startswith("llama-2048"))]
    work = [(c, torch.bfloat16) for c in cases] + [(c, torch.float32) for c in fp32]
    tf32 = torch.backends.cuda.matmul.allow_tf32
    rows = []
    try:
        for i, (case, dtype) in enumerate(work):
            torch.backends.cuda.matmul.allow_tf32 = dtype == torch.float32
            rows.append(measure(case, dtype))
            if (i + 1) % 20 == 0 or i + 1 == len(work):
                sys.stderr.write(f"[gems-aot bench gemm] {i + 1}/{len(work)}\n")
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__}
    summary = summarize(rows)
    text = markdown(rows, summary, meta)
    print(text)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_gemm.json").write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=1))
        (out / "bench_gemm.md").write_text(text)
    return summary
