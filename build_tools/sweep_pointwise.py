"""Launch-shape sweep for the generated contiguous pointwise kernels (JIT, on the GPU box).

  python build_tools/sweep_pointwise.py --out DIR --ops softplus,elu [--dtypes bf16,fp32]

Runs each op's generated contiguous kernel through Triton's JIT with every (BLOCK, num_warps) of
CONFIGS at 16M elements, beside ATen's own kernel on the same input sets (those, the overload and
its arguments as `python -m gems_aot bench` takes them, from the declarations), and writes
sweep_pointwise.json: the data behind the launch shapes chosen in aot/pointwise/declarations.py.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from aot import pointwise  # noqa: E402
from aot import schemas  # noqa: E402
from aot.pointwise.calls import benchmarked_overloads  # noqa: E402
from gems_aot import _bench  # noqa: E402
from pointwise_cases import OPS, TORCH, kernel_params  # noqa: E402

CONFIGS = ((512, 4), (1024, 4), (1024, 8), (2048, 4), (2048, 8), (4096, 8), (4096, 16))


def tensor_overload(name):
    """The overload the benchmark calls for the op, which must take tensor operands only (the
    kernel's all-tensor form)."""
    ov = next(ov for ov, op_name, _ in benchmarked_overloads() if op_name == name)
    types_ = {a.name: str(a.type) for a in schemas.aten_schema(ov.aten).arguments}
    if not all(types_[a] == "Tensor" for a in ov.operands):
        raise SystemExit(f"{name}: its benchmarked overload {ov.aten} takes a scalar operand")
    return ov


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("."))
    parser.add_argument("--ops", required=True, help="comma-separated op names of aot/family_pointwise.py")
    parser.add_argument("--dtypes", default="bf16,fp32")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    module = sys.modules[pointwise.GENERATED_MODULE]
    n = 4096 * 4096
    cases = {c["op"]: c for c in _bench.cases()}
    results = []
    for name in args.ops.split(","):
        op, ov, case = OPS[name], tensor_overload(name), cases[name]
        for dtype_name in args.dtypes.split(","):
            kernel = getattr(module, pointwise.kernel_name(op, dtype_name, "contig"))
            dtype = TORCH[dtype_name]
            sets = [_bench.make_inputs(case, dtype_name, n) for _ in range(2)]
            outs = [torch.empty(s[0].shape, device="cuda", dtype=TORCH[op.out_dtype(dtype_name)]) for s in sets]
            params = kernel_params(ov, name, dtype)
            moved = n * (sum(t.element_size() for t in sets[0]) + outs[0].element_size()) / 1e9
            row = {"op": name, "aten": ov.aten, "dtype": dtype_name,
                   "aten_ms": device_ms(lambda s: _bench.make_call(case, dtype_name, s), sets)}

            def launch(s, o, block, warps):
                flags = {f"S{i}": False for i in range(op.arity)}
                return lambda: kernel[(triton_cdiv(n, block),)](
                    *s, o, n, *([0] * op.arity), *params, **flags, INDEX64=False, BLOCK=block, num_warps=warps)

            for block, warps in CONFIGS:
                row[f"{block}x{warps}"] = device_ms(lambda f: f, [launch(s, o, block, warps) for s, o in zip(sets, outs)])
            expected = _bench.make_call(case, dtype_name, sets[0])()
            torch.testing.assert_close(outs[0], expected, rtol=2e-2, atol=1e-3, equal_nan=True)
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
