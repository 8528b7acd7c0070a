"""Fused linear + cross entropy against the unfused torch composition, on a GPU: time and peak
memory of a forward + backward at LLM sizes.

    python build_tools/bench_linear_ce.py --out DIR      # writes DIR/bench_linear_ce.json and .md

Per vocabulary (default 32000 and 128256; 4096 tokens, hidden 2048, bf16, mean reduction, a tenth
of the targets ignored): ms per forward + backward (the median of --reps timed runs after a
warm-up, CUDA events) and the peak memory torch allocated during it beyond the inputs
(torch.cuda.max_memory_allocated), for
- unfused: F.cross_entropy(F.linear(hidden, weight).float(), target), ATen's kernels;
- fused: gems_aot.fused_linear_cross_entropy with ATen's matmuls (cuBLAS);
- fused+gems: the same under gems_aot.use_gems() (gems' matmuls where its table takes them);
- fused/N: fused with N-row chunks (--chunk-sizes, default 256,4096). Each chunk re-reads and
  re-writes the whole [V, H] weight gradient (its addmm_ has K = the chunk's rows), memory-bound
  at small chunks; the default chunk is 1024 rows: these rows show what smaller and larger cost.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import statistics

import torch

import gems_aot
from gems_aot._linear_ce import default_chunk_size, unfused_linear_cross_entropy

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def inputs(tokens, hidden, vocab, dtype):
    g = torch.Generator(device="cuda").manual_seed(0)
    x = (torch.randn(tokens, hidden, device="cuda", generator=g)).to(dtype).requires_grad_()
    w = (torch.randn(vocab, hidden, device="cuda", generator=g) / hidden**0.5).to(dtype).requires_grad_()
    t = torch.randint(0, vocab, (tokens,), device="cuda", generator=g)
    t[torch.rand(tokens, device="cuda", generator=g) < 0.1] = -100
    return x, w, t


def step(loss_fn, x, w, t):
    x.grad = w.grad = None
    loss_fn(x, w, t).backward()


def measure(loss_fn, x, w, t, reps, gems_on):
    with gems_aot.use_gems(include=None if gems_on else []):
        for _ in range(2):
            step(loss_fn, x, w, t)
        x.grad = w.grad = None
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step(loss_fn, x, w, t)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        times = []
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step(loss_fn, x, w, t)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    return statistics.median(times), peak


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("."))
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--vocabs", default="32000,128256")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="bf16")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--chunk-sizes", default="256,4096", help="further fused runs with these chunk rows")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench_linear_ce: needs a CUDA GPU")
    dtype = DTYPES[args.dtype]
    extra_chunks = [int(c) for c in args.chunk_sizes.split(",") if c]
    rows = []
    for vocab in (int(v) for v in args.vocabs.split(",")):
        x, w, t = inputs(args.tokens, args.hidden, vocab, dtype)
        default = default_chunk_size(args.tokens)
        # (side, chunk rows (None: the unfused composition), gems' matmuls)
        sides = [("unfused", None, False), ("fused", default, False), ("fused+gems", default, True)]
        sides += [(f"fused/{c}", c, False) for c in extra_chunks]
        for name, chunk, gems_on in sides:
            fn = unfused_linear_cross_entropy if chunk is None else functools.partial(
                gems_aot.fused_linear_cross_entropy, chunk_size=chunk)
            ms, peak = measure(fn, x, w, t, args.reps, gems_on)
            rows.append({"vocab": vocab, "tokens": args.tokens, "hidden": args.hidden, "dtype": args.dtype,
                         "side": name, "chunk_rows": chunk, "ms": ms, "peak_bytes": peak})
        del x, w, t
        torch.cuda.empty_cache()
    lines = ["| vocab | side | ms (fwd+bwd) | peak MiB beyond inputs | speed-up over unfused | memory / unfused |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        base = next(b for b in rows if b["vocab"] == r["vocab"] and b["side"] == "unfused")
        lines.append(f"| {r['vocab']} | {r['side']} | {r['ms']:.2f} | {r['peak_bytes'] / 2**20:.0f} | "
                     f"{base['ms'] / r['ms']:.2f}x | {r['peak_bytes'] / base['peak_bytes']:.2f} |")
    title = f"{torch.cuda.get_device_name()}, {args.tokens} tokens x hidden {args.hidden}, {args.dtype}"
    print(title)
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    table = "\n".join([f"fused linear + cross entropy: {title}", ""] + lines)
    (args.out / "bench_linear_ce.md").write_text(table + "\n")
    (args.out / "bench_linear_ce.json").write_text(json.dumps(
        {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
