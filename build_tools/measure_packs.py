"""Measures the kernel packs of the built extension on the CPU (no GPU needed).

    python build_tools/measure_packs.py [--build build] [--out DIR]

Per target: images, cubin and pack bytes, chunks; the first-use cost of a kernel (decompressing
its image from its pack, as the loader does before cuLibraryLoadData: median, 90th percentile
and maximum over every image); and the time to decode the whole pack (every chunk to its end).
Each time is the fastest of REPEATS decodes (every call decodes afresh; the machine may be shared).
Reads the build's manifest (GEMS_AOT_BUILD_DIR/aot/gems_manifest.json) for the image order and
chunks. Prints a markdown table; with --out, writes packs.md and packs.json there too.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import time

import torch

import gems_aot

TARGETS = {80: "sm_80", 90: "sm_90a", 100: "sm_100a"}
REPEATS = 3


def unpack_seconds(index: int) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        torch.ops.gems._unpack_image(index)
        best = min(best, time.perf_counter() - start)
    return best


def measure(manifest: dict) -> dict:
    images = [im for v in manifest["variants"] for im in v["images"]]
    rows = {}
    for arch in manifest["archs"]:
        own = [(i, im) for i, im in enumerate(images) if im["arch"] == arch]
        first_use = sorted(unpack_seconds(i) for i, _ in own)
        last_of_chunk = {im["chunk"]: i for i, im in own}  # decoding it decodes the whole chunk
        whole = sum(unpack_seconds(i) for i in last_of_chunk.values())
        pack = manifest["packs"][str(arch)]
        rows[TARGETS[arch]] = {
            "images": len(own),
            "cubin_mb": pack["cubin_bytes"] / 1e6,
            "pack_mb": pack["bytes"] / 1e6,
            "ratio": pack["cubin_bytes"] / max(pack["bytes"], 1),
            "chunks": pack["chunks"],
            "first_use_ms": {"median": statistics.median(first_use) * 1e3,
                             "p90": first_use[int(0.9 * (len(first_use) - 1))] * 1e3, "max": first_use[-1] * 1e3},
            "whole_pack_s": whole,
        }
    return rows


def markdown(rows: dict, so_bytes: int) -> str:
    lines = ["| target | images | cubins MB | pack MB | ratio | chunks | first use ms (median / p90 / max) | whole pack s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for target, r in rows.items():
        f = r["first_use_ms"]
        lines.append(f"| {target} | {r['images']} | {r['cubin_mb']:.1f} | {r['pack_mb']:.1f} | {r['ratio']:.1f}x | "
                     f"{r['chunks']} | {f['median']:.2f} / {f['p90']:.2f} / {f['max']:.2f} | {r['whole_pack_s']:.2f} |")
    lines.append(f"\nlibgems_aot.so: {so_bytes / 1e6:.1f} MB")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", type=pathlib.Path,
                        default=pathlib.Path(os.environ.get("GEMS_AOT_BUILD_DIR") or "build"))
    parser.add_argument("--out", type=pathlib.Path)
    args = parser.parse_args()
    manifest = json.loads((args.build / "aot" / "gems_manifest.json").read_text())
    if manifest["pack_bytes"] != gems_aot.info()["pack_bytes"]:
        raise SystemExit(f"{args.build} is not the build of {gems_aot.__file__}")
    rows = measure(manifest)
    so_bytes = (pathlib.Path(gems_aot.__file__).parent / "libgems_aot.so").stat().st_size
    text = markdown(rows, so_bytes)
    print(text, end="")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "packs.md").write_text(text)
        (args.out / "packs.json").write_text(json.dumps({"targets": rows, "so_bytes": so_bytes}, indent=1) + "\n")


if __name__ == "__main__":
    main()
