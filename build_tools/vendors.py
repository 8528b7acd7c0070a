"""The GPU vendors gems-aot builds for: each vendor's Triton backend, targets, image format,
runtime loader and status, and the kernels that do not compile for AMD targets (with why).

    python build_tools/vendors.py      # prints both tables (Markdown)

Every kernel not in AMD_NOT_BUILT compiles for gfx942 and gfx950: tests/test_vendors_cpu.py
compiles one variant of each for gfx942 and checks that the families build exactly the others for
AMD targets. A full AMD build: GEMS_AOT_ARCHS=90,gfx942,gfx950 (any mix of targets; the AMD images
go into their own packs, which this runtime never reads).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Vendor:
    name: str
    backend: str  # Triton's backend (GPUTarget's first field)
    targets: tuple  # aot/targets.py names
    image: str
    runtime: str
    status: str


VENDORS = (
    Vendor("nvidia", "cuda", ("sm_80", "sm_90a", "sm_100a"), "cubin",
           "the CUDA driver API, dlopen'd from libcuda.so.1 (csrc/runtime/driver.cpp): cuLibraryLoadData, "
           "cuLibraryGetKernel, cuLaunchKernelEx, cuFuncSetAttribute, cuOccupancyMaxActiveBlocksPerMultiprocessor, "
           "cuMemsetD32Async, cuMemcpyHtoDAsync, cuStreamIsCapturing",
           "built, packed, loaded and run (GPU suite on H100 / H200; sm_80 and sm_100a compiled only)"),
    Vendor("amd", "hip", ("gfx942", "gfx950"), "hsaco (AMDGPU code object)",
           "none yet: the same calls over libamdhip64 (hipModuleLoadData, hipModuleGetFunction, "
           "hipModuleLaunchKernel with num_warps x 64 threads, hipFuncSetAttribute, "
           "hipOccupancyMaxActiveBlocksPerMultiprocessor, hipMemsetD32Async, hipMemcpyHtoDAsync, "
           "hipStreamIsCapturing) in a build against a ROCm torch; "
           "csrc/runtime/kernels.h states the seam, and this build's runtime reports it does not load them",
           "compiled and packed (no AMD card or ROCm here: never run)"),
)

# Kernels (Variant.kernel) the families do not build for AMD targets, and why.
AMD_NOT_BUILT = {
    "kernels.gemm:mm_tma_kernel": "TMA tensor descriptors and PDL (griddepcontrol) are NVIDIA's: AMD targets "
                                  "run mm_kernel for every matmul",
    "kernels.gemm_wgmma:mm_wgmma_kernel": "Gluon's Hopper dialect (wgmma, TMA, mbarrier)",
    "kernels.gemm_skinny:mm_skinny_kernel": "compiles, but serves buckets of the NVIDIA tuning table only",
    "kernels.multi_tensor:adam_kernel": "its bias corrections are CUDA 13's powf, transcribed with CUDA libdevice's "
                                        "fast_dividef and mul_rn (ATen's CUDA formula): AMD targets run ATen's fused Adam",
    **{f"gems_generated_pointwise:pow_pow_bf16_{layout}": "pow_bf16 uses CUDA libdevice's fast_log2f: AMD "
       "targets run bf16 pow with pow" for layout in ("contig", "strided3", "strided8")},
}


def tables() -> str:
    lines = ["| vendor | Triton backend | targets | image | runtime | status |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {v.name} | {v.backend} | {', '.join(v.targets)} | {v.image} | {v.runtime} | {v.status} |"
              for v in VENDORS]
    lines += ["", "| kernel not built for AMD | why |", "| --- | --- |"]
    lines += [f"| `{k}` | {why} |" for k, why in AMD_NOT_BUILT.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(tables())
