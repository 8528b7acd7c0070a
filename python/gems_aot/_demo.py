"""The built-in demo: a small MLP-style step through gems kernels, checked against ATen, then the
model harness on the built-in Llama-style decoder (a shorter training run than `models`)."""

from __future__ import annotations

import time

import torch

import gems_aot
from gems_aot._harness import HarnessConfig, run as run_harness
from gems_aot._info import format_info


def _step(x, w1, b1, w2):
    h = torch.relu(torch.mm(x, w1) + b1)
    y = torch.mm(h, w2)
    return (y * 0.5 - y / 3).sum(dim=1), y.sum()


def _us_per_call(fn, calls=2000):
    for _ in range(100):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls * 1e6


def run() -> int:
    data = gems_aot.info()
    print(format_info(data))
    if data["device"] is None or not data["device"]["supported"]:
        print("demo skipped: it needs a CUDA GPU this build has kernels for")
        return 0
    torch.manual_seed(0)
    print("\nop                 dtype     max |gems - aten|   served by")
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        x = torch.randn(256, 512, device="cuda", dtype=dtype)
        w1 = torch.randn(512, 1024, device="cuda", dtype=dtype) / 512**0.5
        b1 = torch.randn(1024, device="cuda", dtype=dtype)
        w2 = torch.randn(1024, 256, device="cuda", dtype=dtype) / 1024**0.5
        ref = _step(x, w1, b1, w2)
        gems_aot.reset_fallback_counts()
        with gems_aot.use_gems():
            out = _step(x, w1, b1, w2)
        fallbacks = gems_aot.fallback_counts()
        for name, r, o in zip(("mm+add+relu+mm+mul+div+sub+sum(dim)", "sum"), ref, out):
            diff = (r.float() - o.float()).abs().max().item()
            served = "gems" if not fallbacks else f"fallbacks: {fallbacks}"
            print(f"{name:<36} {str(dtype)[6:]:<9} {diff:<15.3g} {served}")
    a = torch.randn(1024, device="cuda")
    aten = _us_per_call(lambda: torch.add(a, a))
    with gems_aot.use_gems():
        gems = _us_per_call(lambda: torch.add(a, a))
    print(f"\nhost time of torch.add on 1024 floats: ATen {aten:.2f} µs, gems {gems:.2f} µs per call\n")
    results = run_harness(HarnessConfig(models=("tiny_llama",), steps=100), out=None)
    return 1 if any("error" in r for r in results["models"].values()) else 0
