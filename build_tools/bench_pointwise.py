"""Pointwise benchmark: every generated op against ATen, measured in one run on one card.

  python build_tools/bench_pointwise.py --out DIR [--ops exp,add,...]

Per generated op, through each functional aten overload that serves it (in-place for fill_,
masked_fill_ and copy_): host µs per call at 1024 elements through the aten op after enable()
versus ATen (the fastest of nine interleaved rounds each), and device GB/s (bytes read + written
once) at 16M elements for fp32 and bf16 contiguous and for fp32 transposed (the strided path),
versus ATen. Writes bench_pointwise.json and bench_pointwise.md; prints the table and the geometric
means of the device ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

import torch

import gems_aot

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from aot import family_pointwise as fam  # noqa: E402
from aot import pointwise  # noqa: E402
from build_tools.bench import device_ms, host_us  # noqa: E402
from pointwise_cases import OPS, TORCH, call_kwargs, operand_dtype, scalar_operand, uses  # noqa: E402


def cases():
    """Per op, the functional overridden overload that serves it, else the in-place one."""
    seen = set()
    for kind in ("functional", "inplace"):
        for ov in fam.OVERLOADS:
            if not ov.override or pointwise.overload_kind(pointwise.aten_schema(ov.aten)) != kind:
                continue
            for name in uses(ov):
                if kind == "functional" or name not in seen:
                    seen.add(name)
                    yield ov, name


def make_call(ov, name, operands):
    op = OPS[name]
    if op.builder == "copy_op":  # self.copy_(src): a cast into a tensor of the op's result dtype
        target = torch.empty_like(operands[0], dtype=TORCH[op.result_dtype])
        return lambda: target.copy_(operands[0])
    base, _, overload = ov.aten.partition(".")
    fn = getattr(getattr(torch.ops.aten, base), overload or "default")
    kwargs = call_kwargs(ov, name, operands[-1].dtype)
    types_ = {a.name: str(a.type) for a in pointwise.aten_schema(ov.aten).arguments}
    args = [scalar_operand(name, t.dtype) if types_[a] == "number" else t for a, t in zip(ov.operands, operands)]
    if not ov.operands:  # fill_: the one tensor is self
        args = list(operands)
    return lambda: fn(*args, **kwargs)


def inputs(op, dtype_name, shape, transposed=False):
    out = []
    for i in range(max(op.arity, 1)):  # a fill's one tensor is the self it writes
        dtype = operand_dtype(op, i, dtype_name)
        if dtype == torch.bool:
            t = torch.rand(shape, device="cuda") > 0.5
        elif dtype.is_floating_point:
            t = torch.rand(shape, device="cuda").to(dtype) + 0.5
        else:
            t = torch.randint(1, 8, shape, device="cuda", dtype=dtype)
        out.append(t.t() if transposed else t)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("."))
    parser.add_argument("--ops", default="", help="comma-separated op names (default: all)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    selected = set(filter(None, args.ops.split(",")))
    rows, results = [], []
    gems_aot.disable()
    for ov, name in cases():
        op = OPS[name]
        if selected and name not in selected:
            continue
        dt = "fp32" if "fp32" in op.dtypes else op.dtypes[0]
        res = {"aten": ov.aten, "op": name}
        small = make_call(ov, name, inputs(op, dt, (1024,)))
        # Host timings drift and catch interference (which only ever adds time; on the H100 box it
        # comes and goes, 8 vs 11 µs) within a run: interleave ATen and gems rounds and keep each
        # side's fastest round.
        rounds = {"aten": [], "gems": []}
        for _ in range(9):
            rounds["aten"].append(host_us(small, calls=1000, repeats=3))
            with gems_aot.use_gems(include=[ov.aten]):
                rounds["gems"].append(host_us(small, calls=1000, repeats=3))
        res["host_aten_us"], res["host_gems_us"] = (min(rounds[k]) for k in ("aten", "gems"))
        res["host_rounds_us"] = rounds
        for label, dtype_name, transposed in (("fp32", dt, False), ("bf16", "bf16", False), ("fp32_t", dt, True)):
            if dtype_name not in op.dtypes:
                continue
            shape = (4096, 4096)
            sets = [inputs(op, dtype_name, shape, transposed) for _ in range(2)]
            out_size = TORCH[op.out_dtype(dtype_name)].itemsize
            # The tensors the call reads: a fill reads none, a Scalar operand is no tensor.
            types_ = {a.name: str(a.type) for a in pointwise.aten_schema(ov.aten).arguments}
            reads = [t for a, t in zip(ov.operands, sets[0]) if types_[a] != "number"]
            moved = shape[0] * shape[1] * (sum(t.element_size() for t in reads) + out_size) / 1e9
            t_aten = device_ms(lambda s: make_call(ov, name, s), sets)
            with gems_aot.use_gems(include=[ov.aten]):
                gems_aot.reset_fallback_counts()
                t_gems = device_ms(lambda s: make_call(ov, name, s), sets)
                served = not gems_aot.fallback_counts()
            res[label] = {"aten_gbps": moved / t_aten * 1e3, "gems_gbps": moved / t_gems * 1e3,
                          "ratio": t_aten / t_gems, "served_by_gems": served}
        results.append(res)
        device = [res[k]["ratio"] for k in ("fp32", "bf16", "fp32_t") if k in res]
        rows.append((f"{ov.aten} [{name}]", f"{res['host_gems_us']:.2f}", f"{res['host_aten_us']:.2f}",
                     f"{res['host_gems_us'] / res['host_aten_us']:.3f}",
                     *(f"{res[k]['gems_gbps']:.0f}/{res[k]['aten_gbps']:.0f}" if k in res else "-"
                       for k in ("fp32", "bf16", "fp32_t")),
                     f"{min(device):.3f}"))
        print(" | ".join(rows[-1]), flush=True)
    ratios = [r[k]["ratio"] for r in results for k in ("fp32", "bf16", "fp32_t") if k in r]
    host = [r["host_gems_us"] / r["host_aten_us"] for r in results]
    summary = {
        "device_ratio_geomean": math.exp(sum(map(math.log, ratios)) / len(ratios)),
        "device_ratio_min": min(ratios),
        "host_ratio_max": max(host),
        "host_ratio_geomean": math.exp(sum(map(math.log, host)) / len(host)),
        "all_served_by_gems": all(r[k]["served_by_gems"] for r in results for k in ("fp32", "bf16", "fp32_t") if k in r),
    }
    header = ("overload [op]", "host µs gems", "host µs ATen", "host ratio", "GB/s fp32 gems/ATen",
              "GB/s bf16 gems/ATen", "GB/s fp32 transposed gems/ATen", "min device ratio")
    md = [f"Device: {torch.cuda.get_device_name()}, torch {torch.__version__}", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md += ["", "| summary | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in summary.items()]
    (args.out / "bench_pointwise.json").write_text(json.dumps({"ops": results, "summary": summary}, indent=1))
    (args.out / "bench_pointwise.md").write_text("\n".join(md) + "\n")
    print("\n".join(md[-8:]))


if __name__ == "__main__":
    main()
