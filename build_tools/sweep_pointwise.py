"""Launch-shape sweep for the generated contiguous pointwise kernels (JIT, on the GPU box).

  python build_tools/sweep_pointwise.py --out DIR [--ops softplus,elu] [--dtypes bf16,fp32]

Runs each op's generated `<op>_contig` kernel through Triton's JIT with every (BLOCK, num_warps)
of CONFIGS at 16M elements, beside ATen's own kernel on the same input sets, and writes
sweep_pointwise.json: the data behind the launch shapes chosen in aot/pointwise.py.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
from aot import family_pointwise as fam  # noqa: E402
from aot import pointwise  # noqa: E402

CONFIGS = ((512, 4), (1024, 4), (1024, 8), (2048, 4), (2048, 8), (4096, 8), (4096, 16))

# op: (ATen call, params passed to the kernel)
CASES = {
    "softplus": (lambda a: F.softplus(a), (1.0, 20.0)),
    "softplus_above": (lambda a: F.softplus(a, 1.5, 0.25), (1.5, 0.25)),  # bench_pointwise's: all above
    "elu": (lambda a: F.elu(a), (1.0, 1.0, 1.0)),
    "atan2": (torch.atan2, ()),
    "pow": (torch.pow, ()),
    "div_floor": (lambda a, b: torch.div(a, b, rounding_mode="floor"), ()),
    "gelu": (F.gelu, ()),
    "gelu_tanh": (lambda a: F.gelu(a, approximate="tanh"), ()),
    "gelu_backward": (lambda g, a: torch.ops.aten.gelu_backward(g, a), ()),
    "gelu_backward_tanh": (lambda g, a: torch.ops.aten.gelu_backward(g, a, approximate="tanh"), ()),
    "remainder": (torch.remainder, ()),
    "tanh": (torch.tanh, ()),
    "sigmoid": (torch.sigmoid, ()),
    "silu": (F.silu, ()),
    "mish": (F.mish, ()),
    "hypot": (torch.hypot, ()),
    "tan": (torch.tan, ()),
    "exp": (torch.exp, ()),
    "add": (torch.add, (1.0,)),
}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("."))
    parser.add_argument("--ops", default=",".join(CASES))
    parser.add_argument("--dtypes", default="bf16,fp32")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    ops = {op.name: op for op in fam.OPS}
    module = sys.modules[pointwise.GENERATED_MODULE]
    n = 4096 * 4096
    results = []
    for name in args.ops.split(","):
        op, (aten, params) = ops[name.removesuffix("_above")], CASES[name]
        for dtype_name in args.dtypes.split(","):
            kernel = getattr(module, pointwise.kernel_name(op, dtype_name, "contig"))
            dtype = getattr(torch, {"bf16": "bfloat16", "fp32": "float32", "fp16": "float16"}[dtype_name])
            sets = [[torch.rand(n, device="cuda").to(dtype) + 0.5 for _ in range(op.arity)] for _ in range(2)]
            outs = [torch.empty(n, device="cuda", dtype=dtype) for _ in sets]
            moved = n * dtype.itemsize * (op.arity + 1) / 1e9
            row = {"op": name, "dtype": dtype_name, "aten_ms": device_ms(lambda s: lambda: aten(*s), sets)}

            def launch(s, o, block, warps):
                flags = {f"S{i}": False for i in range(op.arity)}
                return lambda: kernel[(triton_cdiv(n, block),)](
                    *s, o, n, *([0.0] * op.arity), *params, **flags, INDEX64=False, BLOCK=block, num_warps=warps)

            for block, warps in CONFIGS:
                fns = [launch(s, o, block, warps) for s, o in zip(sets, outs)]
                fns[0]()
                ms = device_ms(lambda f: f, fns)
                row[f"{block}x{warps}"] = ms
            torch.testing.assert_close(outs[0], aten(*sets[0]), rtol=2e-2, atol=1e-3, equal_nan=True)
            best = min(CONFIGS, key=lambda c: row[f"{c[0]}x{c[1]}"])
            row["best"] = f"{best[0]}x{best[1]}"
            results.append(row)
            cells = " ".join(f"{k}:{row['aten_ms'] / row[k]:.2f}" for k in (f"{b}x{w}" for b, w in CONFIGS))
            print(f"{name:10s} {dtype_name:5s} aten {moved / row['aten_ms'] * 1e3:6.0f} GB/s | ratio {cells} | "
                  f"best {row['best']}", flush=True)
    (args.out / "sweep_pointwise.json").write_text(json.dumps(results, indent=1))


def device_ms(make_fn, sets):
    """Median device time as build_tools/bench.py measures it (do_bench, rotating input sets), each
    call replayed from a CUDA graph: a JIT launch costs more host time than these kernels take,
    which would leave the GPU idle inside the timed region."""
    from triton.testing import do_bench

    graphs = []
    for s in sets:
        fn = make_fn(s)
        fn()  # compiles
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        graphs.append(graph)
    state = {"i": 0}

    def step():
        graphs[state["i"] % len(graphs)].replay()
        state["i"] += 1

    return do_bench(step, warmup=50, rep=300, return_mode="median")


def triton_cdiv(a, b):
    return (a + b - 1) // b


if __name__ == "__main__":
    main()
