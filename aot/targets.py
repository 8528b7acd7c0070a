"""The GPU targets a build can compile for, per vendor: what Triton compiles for each (its backend,
architecture and warp size), the binary it produces, and the integer id the generated tables and
the runtime use for it.

CUDA targets are named by their cubin flavour (sm_90a and sm_100a run on 9.0 and 10.0 only);
their ids are the compute capability (80, 90, 100). AMD targets (gfx942: MI300, gfx950: MI350)
compile through Triton's HIP backend to code objects (hsaco) on a machine with no GPU and no ROCm;
their ids are the gfx number. The extension's runtime loads CUDA images only: a HIP build needs the
runtime listed in build_tools/vendors.py, so AMD images are built, packed and checked, not run.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Target:
    id: int  # in GEMS_AOT_ARCHS, the generated tables and the runtime
    name: str  # sm_90a, gfx942
    vendor: str  # "nvidia" or "amd"
    backend: str  # Triton's GPUTarget backend: "cuda" or "hip"
    arch: object  # Triton's GPUTarget arch: 90 or "gfx942"
    warp_size: int
    binary: str  # the key of Triton's compiled asm the image is: "cubin" or "hsaco"

    @property
    def tag(self) -> str:
        """The name without punctuation, for file and symbol names: sm90a, gfx942."""
        return self.name.replace("_", "")


TARGETS = {t.id: t for t in (
    Target(80, "sm_80", "nvidia", "cuda", 80, 32, "cubin"),
    Target(90, "sm_90a", "nvidia", "cuda", 90, 32, "cubin"),
    Target(100, "sm_100a", "nvidia", "cuda", 100, 32, "cubin"),
    Target(942, "gfx942", "amd", "hip", "gfx942", 64, "hsaco"),
    Target(950, "gfx950", "amd", "hip", "gfx950", 64, "hsaco"),
)}
CUDA_IDS = tuple(i for i, t in TARGETS.items() if t.backend == "cuda")
HIP_IDS = tuple(i for i, t in TARGETS.items() if t.backend == "hip")


def parse(text: str) -> tuple:
    """GEMS_AOT_ARCHS: a comma-separated list of ids or names (80, 90, 100, gfx942, sm_90a, ...),
    as sorted ids."""
    by_name = {t.name: i for i, t in TARGETS.items()}
    ids, bad = set(), []
    for item in text.replace(" ", "").split(","):
        if not item:
            continue
        if item in by_name:
            ids.add(by_name[item])
        elif item.isdigit() and int(item) in TARGETS:
            ids.add(int(item))
        else:
            bad.append(item)
    if not ids or bad:
        names = ", ".join(f"{i} ({t.name})" for i, t in TARGETS.items())
        raise ValueError(f"GEMS_AOT_ARCHS must list targets among {names}; got {text!r}")
    return tuple(sorted(ids))
