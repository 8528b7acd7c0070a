"""python -m gems_aot bench: every op gems serves, against ATen and, where installed, FlagGems,
measured in one run on one GPU.

    python -m gems_aot bench --out DIR [--ops add,mm,...] [--dtypes fp32,bf16] [--sizes 16M]
                             [--layouts contiguous,transposed] [--no-flaggems]

The cases come from the extension (the build embeds them from the op declarations, so an op is
declared once): per op, the public call that reaches it (the functional aten overload under
`enable()`, or the torch.ops.gems op of a fused op, whose ATen baseline is its unfused form) and
its arguments per dtype. Per op and dtype:

- host µs per call at a tiny size through the public path: the fastest of interleaved ATen and
  gems rounds (host timings drift and only ever gain time from interference);
- device time at each size: the median of triton's do_bench over two input sets that together
  exceed the L2 cache, as GB/s (bytes read and written once) or TFLOP/s for matmuls;
- with flag_gems importable, FlagGems through its `use_gems()` the same way, and the time of its
  first call of each op and dtype in the process: its JIT compile, which its disk caches shorten
  when an earlier run compiled the same kernel.

Writes bench_ops.json, bench_ops.md and PNG plots (device speed-up and host µs per op, per dtype)
to the output folder, and prints the table.
"""

from __future__ import annotations

import json
import math
import pathlib
import sys
import time
import warnings
from typing import Callable, Optional

import torch
import torch.nn.functional as F

import gems_aot
from gems_aot import _plots

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "i32": torch.int32,
          "i64": torch.int64, "bool": torch.bool}
LAYOUTS = ("contiguous", "transposed")
HOST_ELEMENTS = 1024
HOST_MATRIX = 64
# "rows" cases reduce rows of this length and "matvec" matrices have as many columns (fewer when the
# size is smaller).
ROW_LENGTH = 4096
# "rowwise" cases normalise this many rows at sizes of at least ROWWISE_ROWS * 1024 elements, so the
# size picks the row length (--sizes 131072000: 4096 x 32000); smaller sizes: rows of up to 1024.
ROWWISE_ROWS = 4096
# "norm" cases normalise rows x hidden: a size of elements takes NORM_ROWS rows at the large sizes
# (rows of up to 1024 below), a size "16384x4096" names both.
NORM_ROWS = 4096
ACT_WIDTH = 8192  # "act_and_mul" rows hold 2H = this many elements
ROTARY_HEADS = (32, 8, 128, 4)  # "rotary": q heads, k heads, head dim, batch
# "loss" cases take (rows, classes) inputs: the class count is the first of these vocabularies that
# divides the size (--sizes 131072000: 4096 x 32000; 2101346304: 16384 x 128256), else rows as the
# "rowwise" cases take them.
LOSS_VOCABS = (128256, 32000)
# "embedding" cases gather or scatter tokens x hidden rows of a table of the case's vocabulary
# (sizes as the norm cases'); below EMBEDDING_MIN_TOKENS tokens (the host timing, the CPU tests)
# the table has 8 rows a token instead.
EMBEDDING_MIN_TOKENS = 1024
# The unfused ATen form of gems' fused ops, and FlagGems' own fused op, from the same input.
def _rotate_half(x):
    return torch.cat((-x[..., x.shape[-1] // 2:], x[..., : x.shape[-1] // 2]), dim=-1)


def _hf_rotary(q, k, cos, sin):
    """transformers' apply_rotary_pos_emb (Llama): cos / sin [B, S, D] against q, k [B, H, S, D]."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


BASELINES = {
    "silu_and_mul": lambda x: F.silu(x[..., : x.shape[-1] // 2]) * x[..., x.shape[-1] // 2:],
    "gelu_and_mul": lambda x, approximate: F.gelu(x[..., : x.shape[-1] // 2], approximate=approximate)
    * x[..., x.shape[-1] // 2:],
    "rotary_embedding": _hf_rotary,
    "rms_norm": lambda x, shape, weight, eps: torch.rms_norm(x, shape, weight, eps),
}
FLAGGEMS_FUSED = {
    "silu_and_mul": lambda fg, x: fg.silu_and_mul(x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]),
    "gelu_and_mul": lambda fg, x, approximate: fg.gelu_and_mul(x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:],
                                                               approximate),
}


def cases() -> list[dict]:
    """The benchmark cases the extension was built with (aot/ops.py bench_case)."""
    return json.loads(torch.ops.gems._bench_cases())


def parse_size(text: str):
    """'16M' -> 16777216, '4k' -> 4096, '1000' -> 1000; '16384x4096' -> (16384, 4096), rows x
    hidden of a norm case (other cases take it as that many elements)."""
    if "x" in text:
        rows, hidden = (parse_size(part) for part in text.split("x", 1))
        return rows, hidden
    scale = {"k": 2**10, "m": 2**20, "g": 2**30}.get(text[-1:].lower(), 1)
    value = int(text[:-1] if scale > 1 else text)
    if value <= 0:
        raise ValueError(f"size {text!r} is not positive")
    return value * scale


DEFAULT_DTYPES = ("fp32", "bf16")


def select(all_cases: list[dict], ops: Optional[list[str]], dtypes: Optional[list[str]]) -> list[tuple[dict, str]]:
    """(case, dtype) pairs: the named ops (all by default) at the named dtypes they have. Without
    dtypes, each op at fp32 and bf16 where it has them, else at its first dtype (the integer and
    bool ops), so that every op is measured."""
    known = {c["op"] for c in all_cases}
    unknown = sorted(set(ops or ()) - known)
    if unknown:
        raise ValueError(f"gems_aot bench: unknown ops {unknown}; known: {', '.join(sorted(known))}")
    bad = sorted(set(dtypes or ()) - set(DTYPES))
    if bad:
        raise ValueError(f"gems_aot bench: unknown dtypes {bad}; known: {', '.join(DTYPES)}")
    def chosen(case):
        if dtypes:
            return [dt for dt in case["calls"] if dt in dtypes]
        return [dt for dt in case["calls"] if dt in DEFAULT_DTYPES] or list(case["calls"])[:1]

    return [(c, dt) for c in all_cases if not ops or c["op"] in ops for dt in chosen(c)]


def loss_shape(n: int) -> tuple[int, int]:
    """(rows, classes) of a "loss" case of size n."""
    cols = next((v for v in LOSS_VOCABS if n % v == 0), None)
    if cols is None:
        cols = n // ROWWISE_ROWS if n >= ROWWISE_ROWS * 1024 else min(n, 1024)
    return n // cols, cols


def norm_shape(n) -> tuple[int, int]:
    """(rows, hidden) of a norm case at size n: elements, or (rows, hidden) itself."""
    if isinstance(n, (tuple, list)):
        return tuple(n)
    hidden = n // NORM_ROWS if n >= NORM_ROWS * 1024 else min(n, 1024)
    return n // hidden, hidden


def embedding_vocab(case: dict, tokens: int) -> int:
    """The table rows of an "embedding" case over this many tokens."""
    return case["vocab"] if tokens >= EMBEDDING_MIN_TOKENS else 8 * tokens


def embedding_shape(case: dict, n) -> tuple[int, int, int]:
    """(tokens, hidden, vocabulary) of an "embedding" case at size n."""
    tokens, hidden = norm_shape(n)
    return tokens, hidden, embedding_vocab(case, tokens)


def elements(n) -> int:
    """The element count of a size (rows x hidden: their product)."""
    return math.prod(n) if isinstance(n, (tuple, list)) else n


def input_shapes(kind: str, count: int, n, roles=None) -> list[tuple[int, ...]]:
    """The shape of each input for size n (elements, or the matrix size of a matmul; a norm case's
    inputs by their roles)."""
    if kind == "norm":
        rows, hidden = norm_shape(n)
        by_role = {"x": (rows, hidden), "vec": (hidden,), "stat": (rows, 1)}
        return [by_role[r] for r in roles or ("x",) * count]
    n = elements(n)
    if kind == "loss":
        return [loss_shape(n)] * count
    if kind == "elementwise":
        cols = int(math.sqrt(n)) if n >= 4 * 1024 else n
        return [(n // cols, cols)] * count
    if kind == "rows":
        cols = min(ROW_LENGTH, n)
        return [(n // cols, cols)]
    if kind in ("rowwise", "rowwise_reduce"):
        cols = n // ROWWISE_ROWS if n >= ROWWISE_ROWS * 1024 else min(n, 1024)
        return [(n // cols, cols)] * count
    if kind == "matmul":
        return [(n, n)] * count
    if kind == "act_and_mul":
        width = min(ACT_WIDTH, n)
        return [(n // width, width)]
    if kind == "matvec":
        cols = min(ROW_LENGTH, n)
        return [(n // cols, cols), (cols,)]
    if kind in ("dot", "full"):
        return [(n,)] * count
    if kind == "rotary":  # q of n elements: a Llama-8B-like attention, 4 sequences
        heads, kv_heads, head_dim, batch = ROTARY_HEADS
        seq = max(1, n // (batch * heads * head_dim))
        return [(batch, heads, seq, head_dim), (batch, kv_heads, seq, head_dim), (batch, seq, head_dim),
                (batch, seq, head_dim)]
    raise ValueError(f"unknown bench kind {kind!r}")


def make_inputs(case: dict, dtype: str, n: int, layout: str = "contiguous", device: str = "cuda") -> list[torch.Tensor]:
    """The call's inputs: floats 0.5 + rand (in [0.5, 1.5] once rounded), integers 1..7, random
    bools (every op is defined there); transposed: views of (cols, rows) tensors."""
    spec = case["calls"][dtype]
    if "roles" in spec:
        return _role_inputs(spec, n, device)
    if case["kind"] == "embedding":
        return _embedding_inputs(case, spec, n, device)
    out = []
    shapes = input_shapes(case["kind"], len(spec["tensors"]), n, case.get("roles"))
    for shape, name in zip(shapes, spec["tensors"]):
        dt = DTYPES[name]
        stored = shape[::-1] if layout == "transposed" else shape
        if dt == torch.bool:
            t = torch.rand(stored, device=device) > 0.5
        elif dt.is_floating_point:
            t = (torch.rand(stored, device=device) + 0.5).to(dt)
        else:
            t = torch.randint(1, 8, stored, device=device, dtype=dt)
        out.append(t.t() if layout == "transposed" else t)
    return out


def _role_inputs(spec: dict, n: int, device: str) -> list[torch.Tensor]:
    """A "loss" case's inputs by role: input (rows, classes) floats 0.5 + rand, target int64
    classes uniform over the classes, grad a one-element 1, total_weight the row count."""
    rows, cols = loss_shape(n)
    out = []
    for role, name in zip(spec["roles"], spec["tensors"]):
        dt = DTYPES[name]
        if role == "input":
            out.append((torch.rand((rows, cols), device=device) + 0.5).to(dt))
        elif role == "target":
            out.append(torch.randint(0, cols, (rows,), device=device, dtype=dt))
        elif role == "grad":
            out.append(torch.ones((), device=device, dtype=dt))
        elif role == "total_weight":
            out.append(torch.full((), float(rows), device=device, dtype=dt))
        else:
            raise ValueError(f"unknown input role {role!r}")
    return out


def _embedding_inputs(case: dict, spec: dict, n, device: str) -> list[torch.Tensor]:
    """An "embedding" case's inputs by role: table (vocabulary, hidden) and grad (tokens, hidden)
    floats 0.5 + rand, ids int64 uniform over the vocabulary."""
    tokens, hidden, vocab = embedding_shape(case, n)
    out = []
    for role, name in zip(case["roles"], spec["tensors"]):
        if role == "ids":
            out.append(torch.randint(0, vocab, (tokens,), device=device, dtype=DTYPES[name]))
        else:
            shape = (vocab if role == "table" else tokens, hidden)
            out.append((torch.rand(shape, device=device) + 0.5).to(DTYPES[name]))
    return out


def _aten_op(name: str):
    base, _, overload = name.partition(".")
    return getattr(getattr(torch.ops.aten, base), overload or "default")


def make_call(case: dict, dtype: str, inputs: list[torch.Tensor], side: str = "aten", flag_gems=None) -> Callable:
    """The call of the case on these inputs. side: "aten" (the public path: gems' kernels run
    when enabled), "gems" (torch.ops.gems of a fused op) or "flaggems" (FlagGems' fused op; its
    aten overrides serve the aten side)."""
    spec = case["calls"][dtype]
    args = []
    for a in spec["args"]:
        if "tensor" in a:
            args.append(inputs[a["tensor"]])
        elif "empty" in a:
            args.append(torch.empty_like(inputs[0], dtype=DTYPES[a["empty"]]))
        elif "dtype" in a:
            args.append(DTYPES[a["dtype"]])
        elif "hidden" in a:
            args.append([inputs[0].shape[-1]])
        elif "vocab" in a:  # an embedding case's table rows, from its ids
            args.append(embedding_vocab(case, inputs[a["vocab"]].numel()))
        else:
            args.append(a["value"])
    kwargs = spec["kwargs"]
    if not case["call"].startswith("gems::"):
        fn = _aten_op(case["call"])
        return lambda: fn(*args, **kwargs)
    op = case["call"].split("::", 1)[1]
    if side == "gems":
        gems_op = getattr(torch.ops.gems, op)
        return lambda: gems_op(*args, **kwargs)
    if side == "flaggems":
        return lambda: FLAGGEMS_FUSED[op](flag_gems, *args, **kwargs)
    return lambda: BASELINES[op](*args, **kwargs)


def work(case: dict, dtype: str, inputs: list[torch.Tensor]) -> tuple[float, str]:
    """(amount, unit) a call does: GB moved (inputs read and the result written once), or
    TFLOP of a matmul."""
    spec = case["calls"][dtype]
    if case["kind"] == "matmul":
        (m, k), (_, n) = inputs[0].shape, inputs[1].shape
        return 2 * m * n * k / 1e12, "TFLOP/s"
    read = sum(inputs[i].numel() * inputs[i].element_size() for i in spec["reads"])
    if case["kind"] == "embedding":  # the result: the gathered rows (read too), or the table
        tokens, hidden = inputs[case["roles"].index("ids")].numel(), inputs[0].shape[-1]
        rows = tokens if case["result"] == "gathered" else embedding_vocab(case, tokens)
        written = rows * hidden * DTYPES[spec["out"]].itemsize
        return (read + written * (2 if case["result"] == "gathered" else 1)) / 1e9, "GB/s"
    if case["kind"] == "norm":  # the first result like the first input, the others by role
        rows, hidden = inputs[0].shape[0], inputs[0].shape[-1]
        written = inputs[0].numel() * DTYPES[spec["out"]].itemsize
        written += sum(rows * 4 if r == "stat" else hidden * DTYPES[spec["out"]].itemsize for r in case["writes"])
        return (read + written) / 1e9, "GB/s"
    out_elements = inputs[0].numel()
    if "writes" in spec:  # "one" result element, or "all": as many as the (first) input role
        out_elements = 1 if spec["writes"] == "one" else inputs[spec["roles"].index("input")].numel()
    elif case["kind"] in ("rows", "matvec", "rowwise_reduce"):
        out_elements = inputs[0].shape[0]
    elif case["kind"] in ("dot", "full"):
        out_elements = 1
    elif case["kind"] == "act_and_mul":
        out_elements //= 2
    elif case["kind"] == "rotary":
        out_elements += inputs[1].numel()
    return (read + out_elements * DTYPES[spec["out"]].itemsize) / 1e9, "GB/s"


def host_us(fn: Callable, calls: int = 500, repeats: int = 3) -> float:
    """The fastest of `repeats` timings of `calls` calls, µs per call, one synchronize each."""
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def device_ms(fns: list[Callable], warmup: int = 25, rep: int = 100) -> float:
    """Median device ms (do_bench; warmup and rep in ms), rotating among calls on different input
    sets so that no set stays in L2."""
    from triton.testing import do_bench

    state = {"i": 0}

    def step():
        fns[state["i"] % len(fns)]()
        state["i"] += 1

    return do_bench(step, warmup=warmup, rep=rep, return_mode="median")


class Progress:
    """A one-line progress bar on a terminal, a line per tenth of the run otherwise."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.done, self.stream = total, 0, stream
        self.tty = stream.isatty()

    def step(self, label: str) -> None:
        self.done += 1
        if self.tty:
            filled = 30 * self.done // self.total
            self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} {label:<40}")
            if self.done == self.total:
                self.stream.write("\n")
        elif self.done == self.total or self.done % max(1, self.total // 10) == 0:
            self.stream.write(f"[gems-aot bench] {self.done}/{self.total} {label}\n")
        self.stream.flush()


def _sides(case: dict) -> tuple[str, str]:
    """The call sides that give ATen's and gems' figures."""
    return ("aten", "gems") if case["call"].startswith("gems::") else ("aten", "aten")


def size_key(n) -> str:
    return "x".join(map(str, n)) if isinstance(n, (tuple, list)) else str(n)


def measure(case: dict, dtype: str, sizes: list, layouts: list[str], rounds: int) -> dict:
    """ATen and gems on one case and dtype: host µs and device time per size and layout."""
    aten_side, gems_side = _sides(case)
    tiny = HOST_MATRIX if case["kind"] == "matmul" else HOST_ELEMENTS
    small = make_inputs(case, dtype, tiny)
    aten_fn, gems_fn = make_call(case, dtype, small, aten_side), make_call(case, dtype, small, gems_side)
    host = {"aten": [], "gems": []}
    gems_aot.reset_fallback_counts()
    for _ in range(rounds):
        with gems_aot.use_gems(include=[]):
            host["aten"].append(host_us(aten_fn))
        with gems_aot.use_gems(include=gems_aot.registered_ops()):  # opt-in ops too
            host["gems"].append(host_us(gems_fn))
    row = {"op": case["op"], "call": case["call"], "family": case["family"], "dtype": dtype,
           "host_us": {side: min(v) for side, v in host.items()}, "device": {}}
    for n in sizes:
        for layout in layouts if case["kind"] in ("elementwise", "matvec") else ["contiguous"]:
            sets = [make_inputs(case, dtype, n, layout) for _ in range(2)]
            amount, unit = work(case, dtype, sets[0])
            with gems_aot.use_gems(include=[]):
                t_aten = device_ms([make_call(case, dtype, s, aten_side) for s in sets])
            with gems_aot.use_gems(include=gems_aot.registered_ops()):
                t_gems = device_ms([make_call(case, dtype, s, gems_side) for s in sets])
            row["device"][f"{size_key(n)}/{layout}"] = {"unit": unit, "aten_ms": t_aten, "gems_ms": t_gems,
                                              "aten": amount / t_aten * 1e3, "gems": amount / t_gems * 1e3}
            del sets
    row["served_by_gems"] = not gems_aot.fallback_counts()
    return row


def kernel_names(fn: Callable) -> set[str]:
    """The CUDA kernels (and memcpy / memset) one call of fn launches."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return {e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA}


def measure_flaggems(flag_gems, case: dict, dtype: str, row: dict) -> None:
    """FlagGems on the case, inside its use_gems(): its first call (JIT compile included), host
    µs and device time, beside the row's figures. A call FlagGems does not override (only ATen's
    kernels run) is noted instead of measured."""
    side = "flaggems" if case["call"].startswith("gems::") else "aten"
    tiny = HOST_MATRIX if case["kind"] == "matmul" else HOST_ELEMENTS
    fn = make_call(case, dtype, make_inputs(case, dtype, tiny), side, flag_gems)
    try:
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        first_ms = (time.perf_counter() - start) * 1e3
        if all("at::" in name or "Memcpy" in name or "Memset" in name for name in kernel_names(fn)):
            row["flaggems_error"] = "not served: only ATen's kernels ran"
            return
        row["flaggems_first_call_ms"] = first_ms
        row["host_us"]["flaggems"] = host_us(fn, calls=200, repeats=3)
        for key, figures in row["device"].items():
            n, layout = key.split("/")
            sets = [make_inputs(case, dtype, parse_size(n), layout) for _ in range(2)]
            amount, _ = work(case, dtype, sets[0])
            t = device_ms([make_call(case, dtype, s, side, flag_gems) for s in sets])
            figures["flaggems_ms"], figures["flaggems"] = t, amount / t * 1e3
            del sets
    except Exception as e:  # a call FlagGems rejects: noted, the others go on
        row["flaggems_error"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"


def _geomean(values: list[float]) -> Optional[float]:
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def summarize(rows: list[dict]) -> dict:
    """Ratios to ATen over every row (device: speed, so > 1 is faster; host: time, < 1 is faster)."""
    out = {}
    for lib in ("gems", "flaggems"):
        device = [f[lib] / f["aten"] for r in rows for f in r["device"].values() if lib in f]
        host = [r["host_us"][lib] / r["host_us"]["aten"] for r in rows if lib in r["host_us"]]
        if not device:
            continue
        out[lib] = {"device_speed_geomean": _geomean(device), "device_speed_min": min(device),
                    "host_time_geomean": _geomean(host), "host_time_max": max(host), "rows": len(host)}
    out["gems"]["all_served_by_gems"] = all(r["served_by_gems"] for r in rows)
    first = [r["flaggems_first_call_ms"] for r in rows if "flaggems_first_call_ms" in r]
    if first:
        out["flaggems"]["first_call_ms_median"] = sorted(first)[len(first) // 2]
        out["flaggems"]["first_call_ms_max"] = max(first)
        out["flaggems"]["first_call_s_total"] = sum(first) / 1e3
        out["flaggems"]["not_measured"] = sum("flaggems_error" in r for r in rows)
    return out


def label(row: dict) -> str:
    """The op, and the call that measured it where that is not the op's own name."""
    return row["op"] if row["call"] == row["op"] else f"{row['op']} [{row['call']}]"


def table(rows: list[dict]) -> list[list[str]]:
    with_fg = any("flaggems" in r["host_us"] for r in rows)
    header = ["op", "dtype", "host µs gems / ATen"] + (["host µs FlagGems", "first call ms FlagGems"] if with_fg else [])
    header += ["size / layout", "device gems / ATen", "ratio"] + (["FlagGems", "ratio FlagGems"] if with_fg else [])
    lines = [header]
    for r in rows:
        h = r["host_us"]
        host = [f"{h['gems']:.2f} / {h['aten']:.2f}"]
        if with_fg:
            host += [f"{h['flaggems']:.2f}" if "flaggems" in h else "-",
                     f"{r['flaggems_first_call_ms']:.0f}" if "flaggems_first_call_ms" in r else "-"]
        for key, f in r["device"].items():
            cells = [label(r), r["dtype"], *host, key, f"{f['gems']:.0f} / {f['aten']:.0f} {f['unit']}",
                     f"{f['gems'] / f['aten']:.3f}"]
            if with_fg:
                cells += [f"{f['flaggems']:.0f}" if "flaggems" in f else "-",
                          f"{f['flaggems'] / f['aten']:.3f}" if "flaggems" in f else "-"]
            lines.append(cells)
    return lines


def markdown(rows: list[dict], summary: dict, meta: dict) -> str:
    lines = table(rows)
    md = [f"Device: {meta['device']}, torch {meta['torch']}, gems_aot {meta['gems_aot']}, "
          f"FlagGems {meta['flaggems'] or 'not installed'}", "",
          "| " + " | ".join(lines[0]) + " |", "|" + "---|" * len(lines[0])]
    md += ["| " + " | ".join(line) + " |" for line in lines[1:]]
    md += ["", "| summary | value |", "|---|---|"]
    md += [f"| {lib} {k} | {v:.4g} |" if isinstance(v, float) else f"| {lib} {k} | {v} |"
           for lib, figures in summary.items() for k, v in figures.items()]
    errors = [f"- {label(r)} {r['dtype']}: {r['flaggems_error']}" for r in rows if "flaggems_error" in r]
    if errors:
        md += ["", "FlagGems not measured:", *errors]
    return "\n".join(md) + "\n"


def plot(rows: list[dict], out: pathlib.Path) -> list[pathlib.Path]:
    """Per dtype: device speed-up over ATen per op (largest size), and host µs per op."""
    paths = []
    for dtype in dict.fromkeys(r["dtype"] for r in rows):
        sel = [r for r in rows if r["dtype"] == dtype]
        labels = [label(r) for r in sel]
        last = [list(r["device"].values())[-1] for r in sel]
        speed = {lib: [f.get(lib, math.nan) / f["aten"] for f in last]
                 for lib in ("gems", "flaggems") if any(lib in f for f in last)}
        path = out / f"bench_ops_speedup_{dtype}.png"
        _plots.bars(path, labels, speed, f"device speed over ATen, {dtype} (largest size)", "x ATen", ratios=True)
        paths.append(path)
        host = {lib: [r["host_us"].get(lib, math.nan) for r in sel]
                for lib in ("aten", "gems", "flaggems") if any(lib in r["host_us"] for r in sel)}
        path = out / f"bench_ops_host_{dtype}.png"
        _plots.bars(path, labels, host, f"host µs per call, {dtype}, {HOST_ELEMENTS} elements", "µs")
        paths.append(path)
    return paths


def case_sizes(case: dict, sizes: Optional[list]) -> list:
    """The sizes a case is measured at: those asked for (a matmul's as matrix sizes), else the
    case's own (a norm's LLM shapes), else 16M elements."""
    if not sizes:
        return [parse_size(s) for s in case.get("sizes") or ()] or [16 * 2**20]
    return [_matrix(elements(s)) for s in sizes] if case["kind"] == "matmul" else list(sizes)


def run(ops: Optional[list[str]], dtypes: Optional[list[str]], sizes: Optional[list], layouts: list[str],
        out: Optional[pathlib.Path], flaggems: bool = True, rounds: int = 7) -> dict:
    bad = sorted(set(layouts) - set(LAYOUTS))
    if bad:
        raise ValueError(f"gems_aot bench: unknown layouts {bad}; known: {', '.join(LAYOUTS)}")
    todo = select(cases(), ops, dtypes)
    if not todo:
        raise ValueError("gems_aot bench: no op has kernels for the dtypes asked for")
    flag_gems = None
    if flaggems:
        try:
            import flag_gems
        except ImportError:
            pass
    progress = Progress(len(todo) * (2 if flag_gems else 1))
    rows = []
    for case, dtype in todo:
        rows.append(measure(case, dtype, case_sizes(case, sizes), layouts, rounds))
        progress.step(f"{case['op']} {dtype}")
    if flag_gems is not None:
        gems_aot.disable()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its registrations override ATen's kernels, and say so
            with flag_gems.use_gems():
                for (case, dtype), row in zip(todo, rows):
                    measure_flaggems(flag_gems, case, dtype, row)
                    progress.step(f"FlagGems {case['op']} {dtype}")
    summary = summarize(rows)
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "gems_aot": gems_aot.__version__,
            "flaggems": getattr(flag_gems, "__version__", None) if flag_gems else None,
            "sizes": sizes, "layouts": layouts, "dtypes": dtypes, "ops": ops}
    text = markdown(rows, summary, meta)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_ops.json").write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=1))
        (out / "bench_ops.md").write_text(text)
        if _plots.available():
            plot(rows, out)
    print(text)
    return {"meta": meta, "summary": summary, "rows": rows}


def _matrix(elements: int) -> int:
    """The matrix size of a matmul case for a benchmark size in elements: sqrt, a multiple of 64."""
    return max(64, int(math.sqrt(elements)) // 64 * 64)
