"""What was built and whether this machine's GPU can run it."""

from __future__ import annotations

import importlib.metadata

import torch

try:
    __version__ = importlib.metadata.version("gems-aot")
except importlib.metadata.PackageNotFoundError:
    __version__ = "0+unknown"

def _build() -> tuple:
    """(the build's scalar facts, its targets: id -> (name, vendor, images, why this runtime does
    not load them or ""))."""
    facts, targets = {}, {}
    for line in torch.ops.gems._build_info().splitlines():
        key, *values = line.split("\t")
        if key == "target":
            target, name, vendor, images, unsupported = values
            targets[int(target)] = (name, vendor, int(images), unsupported)
        else:
            facts[key] = values[0]
    return facts, targets


def info() -> dict:
    """Package and torch versions, the triton version used at build, targets and kernel
    counts per target (with their vendor, and why this runtime does not load a vendor's images),
    the kernel packs (their size, and per target what this process has decompressed from them so
    far), and the current device with whether gems kernels run on it."""
    build, targets = _build()
    images = {name: n for name, _, n, _ in targets.values()}
    result = {
        "gems_aot": __version__,
        "torch": torch.__version__,
        "triton_at_build": build["triton_version"],
        "kernels": int(build["kernels"]),
        "images_per_target": images,
        "vendors": {vendor: why or "loaded by this runtime" for _, vendor, _, why in targets.values()},
        "cubin_bytes": int(build["cubin_bytes"]),
        "pack_bytes": int(build["pack_bytes"]),
        "packs_used": packs_used(targets),
        "aten_overrides": len(torch.ops.gems._available_overrides()),
        "gemm_tuning": gemm_tuning(targets),
        "device": None,
    }
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        capability, target = torch.ops.gems._device_info(index)
        result["device"] = {
            "index": index,
            "name": torch.cuda.get_device_name(index),
            "capability": f"{capability // 10}.{capability % 10}",
            "target": targets[target][0] if target in targets else None,
            "supported": target != 0,
        }
    return result


def packs_used(targets: dict) -> dict:
    """Per target: images decompressed from its pack in this process, and the bytes of chunks
    decoded for them (a target no kernel ran on stays at 0: its pack is never read)."""
    flat = torch.ops.gems._pack_use()
    return {targets[arch][0] if arch in targets else str(arch): {"images": images, "decoded_bytes": decoded}
            for arch, images, decoded in zip(flat[::3], flat[1::3], flat[2::3])}


def gemm_tuning(targets: dict) -> dict:
    """Per target: the tuning table's case count and the cases it sends to ATen (cuBLAS was
    faster there; the mm / addmm overrides then run ATen's kernel for that shape bucket)."""
    tuned, routed = torch.ops.gems._gemm_tuning()
    out = {target: {"cases": int(n), "routed_to_aten": []} for target, n in
           (line.split("\t") for line in tuned.splitlines())}
    for line in routed.splitlines():
        target, klass, name, shape, layout, ratio = line.split("\t")
        out[target]["routed_to_aten"].append({"class": klass, "case": name, "shape": shape, "layout": layout,
                                              "ratio": float(ratio)})
    return {targets[int(t[3:])][0] if int(t[3:]) in targets else t: v for t, v in out.items()}


def format_info(data: dict) -> str:
    lines = [
        f"gems_aot {data['gems_aot']}  torch {data['torch']}  triton at build {data['triton_at_build']}",
        f"kernels: {data['kernels']}  images per target: "
        + ", ".join(f"{t}: {n}" for t, n in data["images_per_target"].items())
        + f"  ({data['cubin_bytes'] / 1e6:.1f} MB of cubins in {data['pack_bytes'] / 1e6:.1f} MB of packs)",
        f"aten overloads gems can override: {data['aten_overrides']}",
    ]
    for vendor, status in data["vendors"].items():
        if status != "loaded by this runtime":
            lines.append(f"{vendor} images: {status}")
    for target, t in data["gemm_tuning"].items():
        if t["cases"]:
            lines.append(f"gemm tuning {target}: {t['cases']} tuned cases, {len(t['routed_to_aten'])} sent to ATen "
                         "(cuBLAS faster there; listed by gems_aot.info()['gemm_tuning'])")
        else:
            lines.append(f"gemm tuning {target}: no table, one default configuration")
    dev = data["device"]
    if dev is None:
        lines.append("device: no CUDA device visible (every gems op needs one; aten ops run as usual)")
    else:
        status = f"supported, runs {dev['target']} cubins" if dev["supported"] else "NOT supported: ATen fallback"
        lines.append(f"device: cuda:{dev['index']} {dev['name']} (compute capability {dev['capability']}), {status}")
    return "\n".join(lines)
