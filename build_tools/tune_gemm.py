"""Offline GEMM tuner: on a GPU, times every candidate configuration (of mm_tma_kernel,
mm_wgmma_kernel and mm_skinny_kernel) against cuBLAS over the shape set and writes the per-arch
table the build compiles.

  python build_tools/tune_gemm.py measure --out DIR [--budget-s 480] [--groups train,decode,square]
                                                   [--classes 16bit,tf32,ieee]
  python build_tools/tune_gemm.py table --measurements DIR/gemm_tuning_sm90.json [DIR2/...]  # -> aot/tuning/sm90.json
  python build_tools/tune_gemm.py check --measurements DIR/gemm_tuning_sm90.json [...]  # a rerun against the table

`measure` is resumable: it appends each case to DIR/gemm_tuning_sm<arch>.json as it finishes,
skips the cases already there, and stops cleanly after --budget-s seconds (GPU sessions run
commands of at most 10 minutes); run it again to go on. It needs no built extension: the
kernels run through Triton's JIT with exactly the constexprs, warps and stages the AOT build
compiles, the grid the C++ driver launches (min(tiles, SMs x resident programs); (tiles, K
splits) for mm_skinny_kernel), and every
result checked against cuBLAS's. Times are do_bench medians (L2 flushed before each call). The
table is keyed by (M, N, K): the batched kernels (bmm) use it as it is, and the shape set's
"batched" group is not tuned (Runner.launch runs the batched kernel all the same).
`table` keeps, per case, the fastest configuration (over several measurement files of the same card,
each configuration's and cuBLAS's fastest time), marked "aten" where it stays below
aot/gemm_tuning.py's ROUTE_TO_ATEN share of cuBLAS (classes the measurement did not cover keep the
committed table's entries); `check` compares a second measurement's
choices (ATen counting as one) with the committed table's.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aot import gemm_tuning  # noqa: E402


def load_shapes():
    # By path: importing the gems_aot package would load the extension, which the tuner does not need.
    spec = importlib.util.spec_from_file_location("gemm_shapes", ROOT / "python/gems_aot/_gemm_shapes.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gemm_shapes"] = mod  # dataclasses resolves the module by name
    spec.loader.exec_module(mod)
    return mod


def resident_programs(kernel, props) -> int:
    """Programs of a compiled kernel that fit on one SM at once (shared memory, registers,
    threads), as the driver's occupancy calculator counts them."""
    threads = 32 * kernel.metadata.num_warps
    shared = kernel.metadata.shared + 1024  # the driver reserves 1 KiB per block
    by_shared = getattr(props, "shared_memory_per_multiprocessor", 233472) // max(shared, 1)
    regs = max(kernel.n_regs, 1)
    regs_per_warp = math.ceil(regs * 32 / 256) * 256  # allocation unit: 256 registers a warp
    by_regs = (getattr(props, "regs_per_multiprocessor", 65536) // regs_per_warp) // kernel.metadata.num_warps
    by_threads = getattr(props, "max_threads_per_multi_processor", 2048) // threads
    return max(1, min(by_shared, by_regs, by_threads, 32))


# Per dtype class: the operand dtype, TF32 on or off (for cuBLAS and for the class), and the
# largest problem measured (flops): exact fp32 runs on the FMA units, ~16x slower than bf16.
CLASS_SETUP = {"16bit": ("bfloat16", False, 2.0**41), "tf32": ("float32", True, 2.0**40),
               "ieee": ("float32", False, 2.0**37)}
POINTER = "pointer"  # the name of the ieee class's one configuration: the pointer kernel


class Runner:
    def __init__(self):
        import torch
        import triton

        from aot import family_gemm
        from kernels import gemm, gemm_skinny, gemm_wgmma

        self.torch, self.triton, self.gemm, self.family = torch, triton, gemm, family_gemm
        self.gemm_wgmma, self.gemm_skinny = gemm_wgmma, gemm_skinny
        self.props = torch.cuda.get_device_properties(0)
        self.sms = self.props.multi_processor_count

        def alloc(size, alignment, stream):
            return torch.empty(size, device="cuda", dtype=torch.int8)

        triton.set_allocator(alloc)
        self.resident = {}

    def launch(self, cfg, a, b, c):
        """mm_tma_kernel on [m, k] @ [k, n] (batch 1: the mm variants' batch arguments), or batched
        (BATCHED) on [batch, m, k] @ [batch, k, n], with the arguments csrc/ops/gemm.cpp passes."""
        batched = a.dim() == 3
        a3, b3, c3 = (a, b, c) if batched else (a[None], b[None], c[None])
        batch, m, k = a3.shape
        n = b3.shape[2]
        a_row, b_row = a3.stride(2) == 1, b3.stride(2) == 1
        lead_a = a3.stride(1) if a_row else a3.stride(2)
        lead_b = b3.stride(1) if b_row else b3.stride(2)
        tiles = batch * -(-m // cfg.block_m) * -(-n // cfg.block_n)
        if cfg.kernel == "skinny" and not batched:
            return self.launch_skinny(cfg, a, b, c, tiles, a_row, b_row, lead_a, lead_b)
        if cfg.kernel == "skinny":  # batched: its tile in mm_tma_kernel, as the build does
            cfg = gemm_tuning.batched_tile(cfg)
            tiles = batch * -(-m // cfg.block_m) * -(-n // cfg.block_n)
        key = (cfg, a_row, b_row, a.dtype, batched)
        grid = (min(tiles * cfg.split_k, self.sms * self.resident.get(key, 1)),)
        # The split-K workspace, as the driver allocates it: the counters zeroed, per call.
        partial, counters = c, c
        if cfg.split_k > 1:
            partial = self.torch.empty(tiles * cfg.split_k * cfg.block_m * cfg.block_n, device=a.device,
                                       dtype=self.torch.float32)
            counters = self.torch.zeros(tiles, device=a.device, dtype=self.torch.int32)
        tile = dict(A_ROW=a_row, B_ROW=b_row, EPILOGUE=0, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
                    BLOCK_K=cfg.block_k, GROUP_M=cfg.group_m, num_warps=cfg.num_warps)
        if cfg.kernel == "wgmma" and not batched:
            compiled = self.gemm_wgmma.mm_wgmma_kernel[grid](
                a, b, c, c, partial, counters, m, n, k, lead_a, lead_b, c.stride(0), 0, 1.0, 0.0,
                NUM_BUFFERS=cfg.num_stages, SPLIT_K=1, **tile)
        else:
            # (A batched problem runs a Gluon configuration's tile in mm_tma_kernel, as the build does.)
            batch_args = (batch, *descriptor_batch(a3, batch, lead_a, a_row), *descriptor_batch(b3, batch, lead_b, b_row),
                          descriptor_batch(c3, batch, c3.stride(1), True)[1]) if batched else (1, 1, 0, 1, 0, 0)
            batch_count, batch_a, stride_a, batch_b, stride_b, stride_c = batch_args
            compiled = self.gemm.mm_tma_kernel[grid](
                a3, b3, c3, c3, partial, counters, m, n, k, lead_a, lead_b, c3.stride(1), 0, 1.0, 0.0, batch_count,
                batch_a, batch_b, stride_a, stride_b, stride_c, 0, 0, SUBTILE=cfg.subtile, SPLIT_K=cfg.split_k,
                WARP_SPECIALIZE=cfg.warp_specialize, INPUT_PRECISION="tf32", PDL=False, BATCHED=batched,
                num_stages=cfg.num_stages, **tile)
        if key not in self.resident:
            self.resident[key] = resident_programs(compiled, self.props)
        return compiled

    def launch_skinny(self, cfg, a, b, c, tiles, a_row, b_row, lead_a, lead_b):
        """mm_skinny_kernel on a (tiles, splits) grid, split as the driver splits it."""
        k = a.shape[1]
        splits = gemm_tuning.skinny_splits(tiles, -(-k // cfg.block_k), self.sms)
        partial, counters = c, c
        if splits > 1:
            partial = self.torch.empty(tiles * splits * cfg.block_m * cfg.block_n, device=a.device,
                                       dtype=self.torch.float32)
            counters = self.torch.zeros(tiles, device=a.device, dtype=self.torch.int32)
        return self.gemm_skinny.mm_skinny_kernel[(tiles, splits)](
            a, b, c, c, partial, counters, a.shape[0], b.shape[1], k, lead_a, lead_b, c.stride(0), 0, 1.0, 0.0,
            A_ROW=a_row, B_ROW=b_row, EPILOGUE=0, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
            INPUT_PRECISION="tf32", SPLIT_K=0, num_warps=cfg.num_warps, num_stages=cfg.num_stages)

    def launch_pointer(self, a, b, c):
        """The exact-fp32 pointer kernel with the family's configuration, batched (program_id(1))
        for 3-D operands; the JIT turns unit strides into constexprs and adds the divisibility
        hints, as the AOT variants have them."""
        block_m, block_n, block_k, group_m, num_warps, num_stages = self.family.FP32_IEEE_CONFIG
        batched = a.dim() == 3
        a3, b3, c3 = (a, b, c) if batched else (a[None], b[None], c[None])
        batch, m, k = a3.shape
        n = b3.shape[2]
        grid = (-(-m // block_m) * -(-n // block_n), batch)
        batch_strides = (a3.stride(0), b3.stride(0), c3.stride(0)) if batched else (0, 0, 0)
        return self.gemm.mm_kernel[grid](
            a3, b3, c3, m, n, k, a3.stride(1), a3.stride(2), b3.stride(1), b3.stride(2), c3.stride(1), c3.stride(2),
            *batch_strides, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GROUP_M=group_m,
            INPUT_PRECISION="ieee", BATCHED=batched, num_warps=num_warps, num_stages=num_stages)

    def time_ms(self, fn) -> float:
        return self.triton.testing.do_bench(fn, warmup=5, rep=20, return_mode="median")

    def measure(self, case, shapes, klass) -> dict | None:
        torch = self.torch
        dtype_name, tf32, _ = CLASS_SETUP[klass]
        dtype = getattr(torch, dtype_name)
        torch.backends.cuda.matmul.allow_tf32 = tf32
        gen = torch.Generator(device="cuda").manual_seed(0)
        a, b = shapes.operands(case, dtype, generator=gen)
        if klass != "ieee" and not tma_can_describe(a, b):
            return None
        ref = torch.mm(a, b)
        cublas_ms = self.time_ms(lambda: torch.mm(a, b))
        c = torch.empty(case.m, case.n, device="cuda", dtype=dtype)
        # The wgmma kernel serves 16-bit operands only (the tf32 class lists none of its tiles).
        runs = {cfg.name: (lambda cfg=cfg: self.launch(cfg, a, b, c)) for cfg in gemm_tuning.CANDIDATES[klass]}
        if klass == "ieee":
            runs = {POINTER: lambda: self.launch_pointer(a, b, c)}
        results = {}
        for name, run in runs.items():
            try:
                c.fill_(float("nan"))
                run()  # compiles, and fixes the grid from the occupancy
                run()
                torch.cuda.synchronize()
                err = (c.float() - ref.float()).abs().max().item()
                scale = ref.float().abs().max().item() + 1.0
                if not err <= 0.02 * scale:
                    results[name] = {"error": f"wrong result: max error {err:.3g} (scale {scale:.3g})"}
                    continue
                results[name] = {"ms": self.time_ms(run)}
            except Exception as e:  # a configuration this triton or GPU cannot run is recorded, not fatal
                results[name] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
                torch.cuda.synchronize()
        return {"class": klass, "group": case.group, "name": case.name, "m": case.m, "n": case.n, "k": case.k,
                "layout": case.layout, "cublas_ms": cublas_ms, "configs": results}


def tma_can_describe(*tensors) -> bool:
    """The driver's rule: 16-byte aligned bases and leading strides, and batch strides that are
    16-byte multiples or 0 (else the pointer kernel)."""
    for t in tensors:
        lead = t.stride(-2) if t.stride(-1) == 1 else t.stride(-1)
        batch_stride = t.stride(0) if t.dim() == 3 and t.shape[0] > 1 else 0
        if t.data_ptr() % 16 or lead <= 0 or (lead * t.element_size()) % 16 or (batch_stride * t.element_size()) % 16:
            return False
    return True


def descriptor_batch(t, batch: int, lead: int, row: bool) -> tuple:
    """A [batch, rows, cols] operand's batch extent and stride in its TMA descriptor, as
    csrc/ops/gemm.cpp descriptor_batch gives them: a batch of one, or an operand expanded over the
    batch, is one matrix with the dense stride rounded up to 16 elements (never 0)."""
    if batch == 1 or t.stride(0) == 0:
        return 1, -(-(t.shape[1] if row else t.shape[2]) * lead // 16) * 16
    return batch, t.stride(0)


def case_key(row) -> str:
    return f"{row['class']}_{row['m']}x{row['n']}x{row['k']}_{row['layout']}"


def measure(args) -> int:
    import torch
    import triton

    shapes = load_shapes()
    untuned = set(args.groups.split(",")) - set(shapes.TUNED_GROUPS)
    if untuned:
        raise SystemExit(f"groups {sorted(untuned)} are not tuned: the table is keyed by (M, N, K), and batched "
                         f"problems use it as it is; tune {', '.join(shapes.TUNED_GROUPS)}")
    cap = torch.cuda.get_device_capability()
    arch = cap[0] * 10 + cap[1]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gemm_tuning_sm{arch}.json"
    data = json.loads(path.read_text()) if path.exists() else {
        "arch": arch, "device": torch.cuda.get_device_name(), "torch": torch.__version__,
        "triton": triton.__version__, "candidates": {}, "cases": []}
    # A resumed file keeps what it measured; the classes measured now name today's candidates.
    for klass in args.classes.split(","):
        data["candidates"][klass] = {c.name: c.as_list() for c in gemm_tuning.CANDIDATES[klass]}
    done = {case_key(r) for r in data["cases"]}
    todo, seen = [], set()
    for klass in args.classes.split(","):
        for c in shapes.cases(args.groups.split(",")):
            key = case_key({"class": klass, "m": c.m, "n": c.n, "k": c.k, "layout": c.layout})
            # Distinct problems only (a square 4096 and a layer may coincide).
            if key not in done and key not in seen and c.flop <= CLASS_SETUP[klass][2]:
                seen.add(key)
                todo.append((klass, c))
    runner = Runner()
    tf32 = torch.backends.cuda.matmul.allow_tf32
    start = time.monotonic()
    try:
        for i, (klass, case) in enumerate(todo):
            if time.monotonic() - start > args.budget_s:
                print(f"budget reached: {len(todo) - i} cases left; run again to resume", flush=True)
                break
            row = runner.measure(case, shapes, klass)
            label = f"[{i + 1}/{len(todo)}] {klass:5s} {case.name:32s} {case.m}x{case.n}x{case.k} {case.layout}"
            if row is None:
                print(f"{label}: TMA cannot describe it (the pointer kernel serves it)")
                continue
            data["cases"].append(row)
            path.write_text(json.dumps(data, indent=1))
            best = min(((v["ms"], n) for n, v in row["configs"].items() if "ms" in v), default=(math.inf, "-"))
            print(f"{label}: cuBLAS {row['cublas_ms'] * 1e3:8.1f} us, best {best[1]} {best[0] * 1e3:8.1f} us "
                  f"({row['cublas_ms'] / best[0]:.3f}x)", flush=True)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    print(f"{len(data['cases'])} cases in {path}")
    return 0


def choose(row, names) -> tuple:
    """(fastest config name, its ratio to cuBLAS) of a measured case; (None, 0) if none ran."""
    timed = [(v["ms"], n) for n, v in row["configs"].items() if "ms" in v and n in names]
    if not timed:
        return None, 0.0
    ms, name = min(timed)
    return name, row["cublas_ms"] / ms


def merged(paths) -> dict:
    """Measurements of the same card merged: per case the fastest cuBLAS time and, per
    configuration, its fastest time over the files (a run disturbed by a neighbour's load does not
    decide a bucket); the first file's metadata."""
    runs = [json.loads(p.read_text()) for p in paths]
    data = {**runs[0], "candidates": {}, "cases": []}
    by_key = {}
    for run in runs:
        if run["arch"] != data["arch"]:
            raise SystemExit(f"measurements of sm_{run['arch']} and sm_{data['arch']} cannot be merged")
        for klass, candidates in run["candidates"].items():
            data["candidates"].setdefault(klass, {}).update(candidates)
        for row in run["cases"]:
            key = case_key(row)
            if key not in by_key:
                by_key[key] = {**row, "configs": dict(row["configs"])}
                data["cases"].append(by_key[key])
                continue
            into = by_key[key]
            into["cublas_ms"] = min(into["cublas_ms"], row["cublas_ms"])
            for name, result in row["configs"].items():
                old = into["configs"].get(name, {})
                if "ms" in result and result["ms"] < old.get("ms", math.inf):
                    into["configs"][name] = result
                elif name not in into["configs"]:
                    into["configs"][name] = result
    return data


def table(args) -> int:
    data = merged(args.measurements)
    path = args.table or gemm_tuning.table_path(data["arch"])
    # Classes this measurement did not cover keep the committed table's configurations and rows.
    committed = json.loads(path.read_text()) if path.exists() else {"classes": {}, "rows": []}
    classes = {k: v for k, v in committed["classes"].items() if k not in data["candidates"]}
    rows = [r for r in committed["rows"] if r["class"] in classes]
    for klass, candidates in data["candidates"].items():
        names = set(candidates) | ({POINTER} if klass == "ieee" else set())
        chosen = [(r, *choose(r, names)) for r in data["cases"] if r["class"] == klass]
        chosen = [c for c in chosen if c[1]]
        used = sorted({n for _, n, _ in chosen if n != POINTER}, key=list(candidates).index)
        classes[klass] = {"configs": [candidates[n] for n in used], "config_names": used}
        rows += [{"class": klass, "m": r["m"], "n": r["n"], "k": r["k"], "layout": r["layout"], "name": r["name"],
                  "config": used.index(n) if n != POINTER else 0, "ratio": round(ratio, 3),
                  "aten": ratio < gemm_tuning.ROUTE_TO_ATEN} for r, n, ratio in chosen]
    out = {"arch": data["arch"], "device": data["device"], "torch": data["torch"], "triton": data["triton"],
           "route_to_aten_below": gemm_tuning.ROUTE_TO_ATEN,
           "classes": {k: classes[k] for k in gemm_tuning.CLASSES if k in classes}, "rows": rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    for klass in classes:
        mine = [r for r in rows if r["class"] == klass]
        routed = sum(r["aten"] for r in mine)
        print(f"{path} {klass}: {len(classes[klass]['configs'])} configurations, {len(mine)} cases, {routed} routed "
              f"to ATen ({100 * routed / max(len(mine), 1):.1f}%)")
    return 0


def check(args) -> int:
    """Whether a new measurement picks what the committed table picked, within noise: a
    differing choice is fine where the table's configuration is within `--noise` of the new best
    (several files of one card are merged as `table` merges them)."""
    data = merged(args.measurements)
    committed = json.loads(gemm_tuning.table_path(data["arch"]).read_text())
    by_key = {case_key(r): r for r in committed["rows"]}
    same = close = differ = 0
    for row in data["cases"]:
        old = by_key.get(case_key(row))
        if old is None:
            continue
        klass = row["class"]
        names = committed["classes"][klass]["config_names"] or [POINTER]
        new_name, ratio = choose(row, set(data["candidates"][klass]) | {POINTER})
        new_name = None if ratio < gemm_tuning.ROUTE_TO_ATEN else new_name
        old_name = None if old["aten"] else names[old["config"]]
        if new_name == old_name:
            same += 1
            continue
        timed = {n: v["ms"] for n, v in row["configs"].items() if "ms" in v}
        best = min(timed.values()) if timed else math.inf
        old_ms = timed.get(old_name, row["cublas_ms"] if old_name is None else math.inf)
        if old_ms <= best * (1 + args.noise):
            close += 1
        else:
            differ += 1
            print(f"{row['name']} {case_key(row)}: table {old_name}, now {new_name} ({old_ms / best:.3f}x slower)")
    print(f"same choice {same}, within {args.noise:.0%} of the best {close}, different {differ}")
    return 1 if differ else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("measure")
    p.add_argument("--out", type=pathlib.Path, required=True)
    p.add_argument("--budget-s", type=float, default=480.0)
    p.add_argument("--groups", default="train,decode,square")
    p.add_argument("--classes", default=",".join(gemm_tuning.CLASSES))
    p = sub.add_parser("table")
    p.add_argument("--measurements", type=pathlib.Path, nargs="+", required=True,
                   help="one or more measurement files of the same card (merged: each time's fastest)")
    p.add_argument("--table", type=pathlib.Path, help="default: aot/tuning/sm<arch>.json")
    p = sub.add_parser("check")
    p.add_argument("--measurements", type=pathlib.Path, nargs="+", required=True)
    p.add_argument("--noise", type=float, default=0.03)
    args = parser.parse_args(argv)
    return {"measure": measure, "table": table, "check": check}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
