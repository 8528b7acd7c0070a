"""First benchmark of gems-aot against ATen, measured in one run on one card.

  python build_tools/bench.py --out DIR

Host µs per call (1024-element fp32 add through torch.add after enable(), through
torch.ops.gems.add, and ATen's torch.add), device GB/s of a 64M-element fp32 add and of a
64M-element fp32 sum, mm TFLOP/s at 4096^3 bf16 beside cuBLAS, the first call of each op in a
fresh process, and import + enable time. Writes bench.json and bench.md; prints the table.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import time

import torch

import gems_aot
from gems_aot import _bench

# Issue #2's targets: (metric, comparison, bound).
TARGETS = {
    "host_add_enable_vs_aten": ("<=", 1.05),
    "host_gems_add_vs_aten": ("<=", 1.5),
    "add_64M_gbps_vs_aten": (">=", 0.97),
    "mm_bf16_4096_tflops_vs_cublas": (">=", 0.8),
    "first_call_ms_max": ("<", 5.0),
    "import_enable_s": ("<", 0.5),
}


def host_us(fn, calls=5000, repeats=7):
    """Median over repeats of wall-clock µs per call, one synchronize per repeat."""
    for _ in range(200):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def device_ms(make_fn, sets):
    """Median device time of make_fn(set), rotating among the input sets (longer runs than the op
    benchmark's: these figures are the foundation targets)."""
    return _bench.device_ms([make_fn(s) for s in sets], warmup=50, rep=300)


FIRST_CALL = r"""
import json, time, torch
x = torch.randn(4096, device="cuda"); m = torch.randn(256, 256, device="cuda", dtype=torch.bfloat16)
torch.add(x, x); torch.mm(m, m); torch.sum(x); torch.relu(x); torch.cuda.synchronize()  # ATen warm
t0 = time.perf_counter(); import gems_aot; t1 = time.perf_counter(); gems_aot.enable(); t2 = time.perf_counter()
gems_aot.disable()
res = {"import_s": t1 - t0, "enable_s": t2 - t1}
for name, fn in [("add", lambda: torch.ops.gems.add(x, x)), ("sub", lambda: torch.ops.gems.sub(x, x)),
                 ("mul", lambda: torch.ops.gems.mul(x, x)), ("div", lambda: torch.ops.gems.div(x, x)),
                 ("relu", lambda: torch.ops.gems.relu(x)), ("sum", lambda: torch.ops.gems.sum(x)),
                 ("mm", lambda: torch.ops.gems.mm(m, m))]:
    torch.cuda.synchronize(); t = time.perf_counter(); fn(); torch.cuda.synchronize()
    res["first_" + name + "_ms"] = (time.perf_counter() - t) * 1e3
print(json.dumps(res))
"""


def first_calls():
    out = subprocess.run([sys.executable, "-c", FIRST_CALL], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("."))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    dev = torch.cuda.current_device()
    res = {"device": torch.cuda.get_device_name(dev), "torch": torch.__version__, "info": gems_aot.info()}

    # Host latency, tiny inputs.
    a, b = torch.randn(1024, device="cuda"), torch.randn(1024, device="cuda")
    gems_aot.disable()
    # Host timings drift by 10-30% within a run: interleave ATen and gems rounds, take medians.
    rounds = {"aten": [], "enable": [], "gems": []}
    for _ in range(3):
        rounds["aten"].append(host_us(lambda: torch.add(a, b)))
        with gems_aot.use_gems():
            rounds["enable"].append(host_us(lambda: torch.add(a, b)))
        rounds["gems"].append(host_us(lambda: torch.ops.gems.add(a, b)))
    aten, enabled, gems = (statistics.median(rounds[k]) for k in ("aten", "enable", "gems"))
    res["host_us"] = {"aten_add": aten, "enable_add": enabled, "gems_add": gems, "rounds": rounds}
    base = aten
    res["host_add_enable_vs_aten"] = enabled / base
    res["host_gems_add_vs_aten"] = gems / base
    h = {}
    x = torch.randn(1024, device="cuda")
    m = torch.randn(64, 64, device="cuda")
    for name, fn in [("mul", lambda: torch.mul(x, x)), ("div", lambda: torch.div(x, x)),
                     ("sub", lambda: torch.sub(x, x)), ("relu", lambda: torch.relu(x)),
                     ("add_scalar", lambda: torch.add(x, 2.0)), ("sum", lambda: torch.sum(x)),
                     ("sum_dim", lambda: m.sum(1)), ("mm64", lambda: torch.mm(m, m))]:
        t_aten = host_us(fn, calls=2000, repeats=5)
        with gems_aot.use_gems():
            t_gems = host_us(fn, calls=2000, repeats=5)
        h[name] = {"aten_us": t_aten, "enable_us": t_gems, "ratio": t_gems / t_aten}
    res["host_other"] = h

    # Device bandwidth: 64M-element fp32 add (3 x 256 MB moved per call, far beyond L2).
    n = 64 * 1024 * 1024
    sets = [(torch.randn(n, device="cuda"), torch.randn(n, device="cuda")) for _ in range(2)]
    gb = 3 * n * 4 / 1e9
    t_aten = device_ms(lambda s: (lambda: torch.add(*s)), sets)
    t_gems = device_ms(lambda s: (lambda: torch.ops.gems.add(*s)), sets)
    res["add_64M"] = {"aten_gbps": gb / t_aten * 1e3, "gems_gbps": gb / t_gems * 1e3}
    res["add_64M_gbps_vs_aten"] = t_aten / t_gems
    gb_sum = n * 4 / 1e9
    t_aten = device_ms(lambda s: (lambda: torch.sum(s[0])), sets)
    t_gems = device_ms(lambda s: (lambda: torch.ops.gems.sum(s[0])), sets)
    res["sum_64M"] = {"aten_gbps": gb_sum / t_aten * 1e3, "gems_gbps": gb_sum / t_gems * 1e3,
                      "ratio": t_aten / t_gems}
    copy_ms = device_ms(lambda s: (lambda: s[1].copy_(s[0])), sets)
    res["copy_64M_gbps"] = 2 * n * 4 / 1e9 / copy_ms * 1e3
    del sets

    # mm bf16 4096^3 against cuBLAS.
    k = 4096
    msets = [(torch.randn(k, k, device="cuda", dtype=torch.bfloat16),
              torch.randn(k, k, device="cuda", dtype=torch.bfloat16)) for _ in range(3)]
    flops = 2 * k**3
    t_aten = device_ms(lambda s: (lambda: torch.mm(*s)), msets)
    t_gems = device_ms(lambda s: (lambda: torch.ops.gems.mm(*s)), msets)
    res["mm_bf16_4096"] = {"cublas_tflops": flops / t_aten / 1e9, "gems_tflops": flops / t_gems / 1e9}
    res["mm_bf16_4096_tflops_vs_cublas"] = t_aten / t_gems
    for dtype in (torch.float16, torch.float32):
        s = [(torch.randn(k, k, device="cuda", dtype=dtype), torch.randn(k, k, device="cuda", dtype=dtype))]
        ta = device_ms(lambda s: (lambda: torch.mm(*s)), s)
        tg = device_ms(lambda s: (lambda: torch.ops.gems.mm(*s)), s)
        res[f"mm_{str(dtype)[6:]}_4096"] = {"cublas_tflops": flops / ta / 1e9, "gems_tflops": flops / tg / 1e9}

    # bf16 shapes beyond the square: small (launch-bound, where PDL overlap shows) and an LLM MLP.
    res["mm_bf16_shapes"] = {}
    for M, N, K in ((512, 512, 512), (16, 4096, 4096), (4096, 11008, 4096)):
        s = [(torch.randn(M, K, device="cuda", dtype=torch.bfloat16),
              torch.randn(K, N, device="cuda", dtype=torch.bfloat16)) for _ in range(3)]
        ta = device_ms(lambda s: (lambda: torch.mm(*s)), s)
        tg = device_ms(lambda s: (lambda: torch.ops.gems.mm(*s)), s)
        res["mm_bf16_shapes"][f"{M}x{N}x{K}"] = {"cublas_tflops": 2 * M * N * K / ta / 1e9,
                                                 "gems_tflops": 2 * M * N * K / tg / 1e9}

    fc = first_calls()
    res["first_calls"] = fc
    res["first_call_ms_max"] = max(v for key, v in fc.items() if key.startswith("first_"))
    res["import_enable_s"] = fc["import_s"] + fc["enable_s"]

    rows = [("metric", "gems", "baseline", "ratio / value", "target", "ok")]
    def row(name, gems_v, base_v, key):
        op, bound = TARGETS[key]
        v = res[key]
        ok = {"<=": v <= bound, ">=": v >= bound, "<": v < bound}[op]
        rows.append((name, gems_v, base_v, f"{v:.3f}", f"{op} {bound}", "yes" if ok else "NO"))
    row("host µs torch.add 1024 fp32 (enable)", f"{enabled:.2f}", f"{base:.2f}", "host_add_enable_vs_aten")
    row("host µs torch.ops.gems.add 1024 fp32", f"{gems:.2f}", f"{base:.2f}", "host_gems_add_vs_aten")
    row("add 64M fp32 GB/s", f"{res['add_64M']['gems_gbps']:.0f}", f"{res['add_64M']['aten_gbps']:.0f}",
        "add_64M_gbps_vs_aten")
    row("mm bf16 4096^3 TFLOP/s", f"{res['mm_bf16_4096']['gems_tflops']:.0f}",
        f"{res['mm_bf16_4096']['cublas_tflops']:.0f}", "mm_bf16_4096_tflops_vs_cublas")
    row("first call, slowest op (ms)", "", "", "first_call_ms_max")
    row("import gems_aot + enable (s)", "", "", "import_enable_s")
    for name, v in h.items():
        rows.append((f"host µs {name} (enable)", f"{v['enable_us']:.2f}", f"{v['aten_us']:.2f}", f"{v['ratio']:.3f}",
                     "", ""))
    rows.append(("sum 64M fp32 GB/s", f"{res['sum_64M']['gems_gbps']:.0f}", f"{res['sum_64M']['aten_gbps']:.0f}",
                 f"{res['sum_64M']['ratio']:.3f}", "", ""))
    for key in ("mm_float16_4096", "mm_float32_4096"):
        rows.append((f"{key} TFLOP/s", f"{res[key]['gems_tflops']:.1f}", f"{res[key]['cublas_tflops']:.1f}",
                     f"{res[key]['gems_tflops'] / res[key]['cublas_tflops']:.3f}", "", ""))
    for shape, v in res["mm_bf16_shapes"].items():
        rows.append((f"mm bf16 {shape} TFLOP/s", f"{v['gems_tflops']:.1f}", f"{v['cublas_tflops']:.1f}",
                     f"{v['gems_tflops'] / v['cublas_tflops']:.3f}", "", ""))
    rows.append(("device-to-device copy GB/s", "", f"{res['copy_64M_gbps']:.0f}", "", "", ""))
    md = [f"Device: {res['device']}, torch {res['torch']}, triton at build {res['info']['triton_at_build']}", "",
          "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    md += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    (args.out / "bench.json").write_text(json.dumps(res, indent=1))
    (args.out / "bench.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
