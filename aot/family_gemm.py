"""The gemm family: mm and addmm (C = beta * bias + alpha * A @ B), bmm and baddbmm (the same per
batch: C[b] = beta * self[b] + alpha * A[b] @ B[b]), fp32 accumulation.

Four kernels: kernels/gemm.py's two, each in an mm grid and a batched one (the constexpr
BATCHED; the mm variants take the batch arguments as constexprs and compile to the kernels they
were), and kernels/gemm_wgmma.py's and kernels/gemm_skinny.py's, in the mm grid only.

Grid "mm_tma" (sm_90a, sm_100a; fp16 / bf16, and fp32 under TF32): persistent, TMA-fed, grouped
tile order, an optional bias-row epilogue (addmm as nn.Linear calls it). Each configuration of the
tuning table names its kernel: mm_tma_kernel (triton.language; epilogue subtiling, split-K) or,
on sm_90a for 16-bit dtypes, mm_wgmma_kernel (Gluon; warp-specialised), or, for few rows,
mm_skinny_kernel (pointer loads, C^T = B^T A^T, split along K at launch to about one program per
SM: its SPLIT_K launch param is 0). All take the same runtime arguments. Axes:
  dtype      fp32 (TF32 only: exact fp32 runs mm_kernel), fp16, bf16
  a_layout   row or col; b_layout row or col (a col-major operand is a descriptor over its
             transpose: no copies)
  epilogue   none (mm), bias (alpha * A @ B + beta * bias[n])
  config     c0, c1, ...: the tile configurations of the target's tuning table for the dtype's
             class (16bit or tf32; aot/gemm_tuning.py, aot/tuning/sm<arch>.json)
It needs what TMA needs: 16-byte aligned base pointers and leading strides that are positive
multiples of 16 bytes. M, N and K are free: TMA clips the edges, so uneven token counts run at
full speed. The driver (csrc/ops/gemm.cpp) picks the configuration from the table by the shape
bucket of (M, N, K) and the layout, and launches min(tiles, SMs x resident programs) programs;
where the table marks the bucket for ATen (cuBLAS measured faster) the aten overrides call ATen.

mm_kernel, grid "mm" (every target; what mm_tma_kernel does not serve: exact fp32, sm_80,
operands TMA cannot describe): pointer loads, one program per tile.
  dtype      fp32, fp16, bf16 (output dtype = input dtype)
  precision  ieee, tf32: the tl.dot input precision; tf32 exists for fp32 only (the C++ driver
             picks it when at::globalContext().allowTF32CuBLAS(), as ATen's cuBLAS path does)
  a_layout   row (stride_ak == 1) or col (stride_am == 1); the unit stride becomes the constexpr 1
  b_layout   row (stride_bn == 1) or col (stride_bk == 1)
  align      aligned: the tt.divisibility=16 hint on the pointers (address % 16 bytes), on the
             leading strides (value % 16, in elements), on N and K, and on M when A is col-major;
             general: no hint. The driver picks "aligned" exactly when all of these hold.
             On the TMA targets the aligned 16-bit and TF32 points are never reached (TMA serves
             them) and are not compiled.
C is always written row-major; the driver computes a col-major `out=` as C^T = B^T @ A^T.

Why the pointer kernel's hints: a dimension is loaded with wide vectors only if Triton knows it
is contiguous (the constexpr unit stride), that every row starts 16-byte aligned (pointer and
leading stride) and that the bounds mask is constant over 16 elements. Without them loads are
2- or 4-byte and unpipelined (27 TFLOP/s bf16 at 4096^3 on an H100, against 540 aligned).

The batched grids (csrc/ops/bmm.cpp drives them through the same core as mm, csrc/ops/gemm.h):

mm_tma_kernel batched, grid "bmm_tma": mm_tma's axes (a configuration of the Gluon kernel, which
has no batch dimension, runs its tile, warps and buffer count as stages in mm_tma_kernel; one of
the skinny kernel its tile at 64 rows, gemm_tuning.batched_tile), with epilogue none (bmm) or full
(baddbmm: alpha * A @ B + beta * self read through its strides as broadcast to [batch, M, N], so
every self torch accepts runs in the kernel: a full tensor (attention's mask or bias), one matrix
for every batch, a bias row, a column, a scalar; the driver swaps its strides for a transposed
problem). Rank-3 descriptors; work items are batch x tiles x SPLIT_K, walked persistently. Batch
strides must be 16-byte multiples like the leading ones. An operand expanded over the batch
(stride 0, as torch.matmul's broadcasting makes it) is described as one matrix (batch extent 1,
read at batch 0) instead: cuTensorMapEncodeTiled's rules give strides as multiples of 16 bytes
with each one spanning the dimensions inside it, and the descriptors Triton builds on the device
are not validated at all, so whether the hardware honours a stride of 0 is not something to rely
on; the extent-1 descriptor needs no such stride. The full epilogue brings self's tile to the
accumulator's layout through shared memory (a scratch of one slice in fp32 beside the pipeline's
stages): its variants slice the epilogue finer than the configuration does (subtile(): at most
FULL_EPILOGUE_SLICE elements a slice), which keeps every sm_90a configuration within the SM's
227 KiB (the 4-stage 128x256 tile with 64-column slices did not fit). On sm_100a the default
configuration already fills shared memory: some of its variants (as some of mm's) do not load
there and fall back to ATen (counted as arch) until a table is tuned for it.

mm_kernel batched, grid "bmm": mm's axes, program_id(1) = the batch, int64 batch offsets
(aligned variants also hint the batch strides). They serve bmm where TMA does not (exact fp32,
sm_80, batch strides or leading strides off 16 bytes, operands with a leading stride of 0),
as mm's pointer kernel does; more than 65535 batches (the grid's y limit) go to ATen. baddbmm
has no pointer-kernel epilogue: those cases go to ATen (counted as args), as addmm's do, because
they are the slow path anyway (exact fp32, sm_80, odd strides) and an epilogue there would be a
second copy of the full one for little use.

Batched problems use the mm tuning table by the (M, N, K) of their matrices, for now (the tuner
does not measure batched shapes): the configuration, and the routing of the aten overrides to
ATen where cuBLAS measured faster for that mm bucket. A split-K configuration allocates its
workspace per matrix: batch x split_k fp32 partial tiles of the output.
"""

from aot.ops import AtenOverride, Example, GemsOp, T, bench_case
from aot import gemm_tuning
from aot.variants import FLOAT_DTYPES, KernelGrid, Variant, ptr

KERNEL = "kernels.gemm:mm_kernel"
TMA_KERNEL = "kernels.gemm:mm_tma_kernel"
WGMMA_KERNEL = "kernels.gemm_wgmma:mm_wgmma_kernel"
SKINNY_KERNEL = "kernels.gemm_skinny:mm_skinny_kernel"

# Tile configs per (arch, dtype class): (BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, num_warps, num_stages),
# until the offline tuner commits per-shape tables. The sm_90a ones were checked against a sweep
# on an H100 (triton 3.6, 4096^3, all four layouts); sm_80 and sm_100a are unmeasured.
CONFIGS = {
    # sm_80: the matmul tutorial's (03-matrix-multiplication) 128x128x32, 4 warps, 4 stages
    # for 16-bit (64 KiB of shared memory; A100 has 164 KiB); tf32 tiles take twice the bytes,
    # so one stage less.
    (80, "16bit"): (128, 128, 32, 8, 4, 4),
    (80, "tf32"): (128, 128, 32, 8, 4, 3),
    # sm_90a: the tutorial's first Hopper config, wgmma on 2 warpgroups; 3 stages of 128x64 +
    # 64x256 16-bit tiles = 144 KiB of shared memory (the > 48 KiB launch path). Best or within
    # 4% of the best of the configs tried for every layout: 540-720 TFLOP/s bf16 at 4096^3,
    # cuBLAS 730-750. tf32 takes the same tile with BLOCK_K 32 (same bytes): 290 TFLOP/s
    # for row-major A with col-major B, cuBLAS 375; the other layouts run 65-150 (tf32 wgmma
    # wants K-contiguous operands).
    (90, "16bit"): (128, 256, 64, 8, 8, 3),
    (90, "tf32"): (128, 256, 32, 8, 8, 3),
    # sm_100a: the Hopper tiles with a 4th stage (192 KiB; B200 has 228 KiB per SM).
    (100, "16bit"): (128, 256, 64, 8, 8, 4),
    (100, "tf32"): (128, 256, 32, 8, 8, 4),
    # gfx942 / gfx950 (compiled, never run: no AMD card at hand): the sm_80 tiles with 2 stages,
    # what Triton's AMD pipeliner streams (64 KiB of LDS per CU on gfx942).
    **{(arch, klass): (128, 128, 32, 8, 4, 2) for arch in (942, 950) for klass in ("16bit", "tf32")},
}
# fp32 in ieee precision runs on the FMA units, not the tensor cores. Best of the sweep for the
# common row-major A / col-major B layout (25 TFLOP/s at 2048^3 on H100, cuBLAS 50; 40 for
# row-major B); used on every target.
FP32_IEEE_CONFIG = (128, 128, 16, 8, 4, 3)


def config(dtype: str, precision: str, arch: int) -> tuple:
    if dtype == "fp32" and precision == "ieee":
        return FP32_IEEE_CONFIG
    return CONFIGS[(arch, "tf32" if dtype == "fp32" else "16bit")]


TMA_ARCHS = tuple(gemm_tuning.DEFAULT_CONFIG)
# The kernel's EPILOGUE codes; mm_tma takes none and bias, bmm_tma none and full.
EPILOGUES = ("none", "bias", "full")
# The config axis spans the longest configuration list of any target; a target with fewer
# leaves the rest uncovered.
NUM_TMA_CONFIGS = max(len(gemm_tuning.configs_for(a, c)) for a in TMA_ARCHS for c in gemm_tuning.TMA_CLASSES)


def tma_class(dtype: str) -> str:
    return "tf32" if dtype == "fp32" else "16bit"


def batch_arguments(batched: bool, arguments) -> tuple:
    """The batch arguments ((name, type, value in mm)): runtime arguments of the batched variants,
    constexprs of the mm ones, so that an mm variant's arguments and code stay what they were."""
    signature = tuple((name, t if batched else "constexpr") for name, t, _ in arguments)
    constexprs = () if batched else tuple((name, value) for name, _, value in arguments)
    return signature, constexprs + (("BATCHED", batched),)


# (name, type, value in the mm variants) of mm_tma_kernel's batch arguments: the batch count,
# each operand's batch extent (1 for an operand expanded over the batch), the batch strides, and
# the full epilogue's row and batch strides of self.
TMA_BATCH_ARGUMENTS = (
    ("batch", "i32", 1), ("batch_a", "i32", 1), ("batch_b", "i32", 1),
    ("stride_batch_a", "i64", 0), ("stride_batch_b", "i64", 0), ("stride_batch_c", "i64", 0),
    ("bias_stride_m", "i32", 0), ("bias_stride_batch", "i64", 0),
)
POINTER_BATCH_ARGUMENTS = (("stride_batch_a", "i64", 0), ("stride_batch_b", "i64", 0), ("stride_batch_c", "i64", 0))


# The full epilogue brings self's tile to the accumulator's layout through shared memory: a
# scratch of one epilogue slice in fp32, beside the pipeline's stages. Slices of at most 4096
# elements (16 KiB) keep every configuration within the 227 KiB of an SM (128x256 tiles in 64-
# or 128-column slices overflow it).
FULL_EPILOGUE_SLICE = 4096


def subtile(cfg, epilogue: str) -> int:
    """The column slices of the epilogue: the configuration's, finer for the full epilogue."""
    if epilogue == "full":
        return max(cfg.subtile, cfg.block_m * cfg.block_n // FULL_EPILOGUE_SLICE)
    return cfg.subtile


def make_mm_tma(point, arch, batched=False):
    if arch not in TMA_ARCHS:
        return None
    configs = gemm_tuning.configs_for(arch, tma_class(point["dtype"]))
    index = int(point["config"][1:])
    if index >= len(configs):
        return None
    return tma_variant(configs[index], point, batched)


def tma_variant(cfg, point, batched=False):
    """The variant of a grid point (its config axis aside) in tile configuration cfg."""
    # The Gluon kernel serves 16-bit operands only: TF32 wgmma reads K-major operands only, and the
    # table's tf32 class has no such configuration.
    if cfg.kernel == "wgmma" and point["dtype"] == "fp32":
        return None
    dtype = ptr(point["dtype"])
    signature = (
        *((name, dtype) for name in ("a", "b", "c", "bias")),
        ("partial", "*fp32"),
        ("counters", "*i32"),
        *((name, "i32") for name in ("M", "N", "K", "lead_a", "lead_b", "lead_c", "bias_stride")),
        ("alpha", "fp32"),
        ("beta", "fp32"),
    )
    tile = (
        ("A_ROW", point["a_layout"] == "row"),
        ("B_ROW", point["b_layout"] == "row"),
        ("EPILOGUE", EPILOGUES.index(point["epilogue"])),
        ("BLOCK_M", cfg.block_m),
        ("BLOCK_N", cfg.block_n),
        ("BLOCK_K", cfg.block_k),
        ("GROUP_M", cfg.group_m),
    )
    common = dict(
        # TMA's own requirement on the bases; the leading strides need only 16 bytes, which
        # the hint (16 elements) would overstate.
        divisible16=("a", "b", "c"),
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
        launch_params=("BLOCK_M", "BLOCK_N", "SPLIT_K", "BLOCK_K"),
    )
    if cfg.kernel == "skinny" and not batched:
        # SPLIT_K 0 tells the driver that the split is chosen at launch (grid axis 1). No PDL: the
        # kernel has no grid-dependency wait.
        constexprs = tile[:6] + (("INPUT_PRECISION", "tf32"), ("SPLIT_K", 0))
        return Variant(kernel=SKINNY_KERNEL, signature=signature + tuple((name, "constexpr") for name, _ in constexprs),
                       constexprs=constexprs, launch_pdl=False, **common)
    if cfg.kernel == "skinny":
        # Batched problems run the table's skinny buckets in mm_tma_kernel (gemm_tuning.batched_tile).
        cfg = gemm_tuning.batched_tile(cfg)
        tile = tile[:3] + (("BLOCK_M", cfg.block_m), ("BLOCK_N", cfg.block_n), ("BLOCK_K", cfg.block_k),
                           ("GROUP_M", cfg.group_m))
    if cfg.kernel == "wgmma" and not batched:
        # No PDL: the Gluon kernel has no grid-dependency wait.
        constexprs = tile + (("NUM_BUFFERS", cfg.num_stages), ("SPLIT_K", 1))
        return Variant(kernel=WGMMA_KERNEL, signature=signature + tuple((name, "constexpr") for name, _ in constexprs),
                       constexprs=constexprs, launch_pdl=False, **common)
    batch_signature, batch_constexprs = batch_arguments(batched, TMA_BATCH_ARGUMENTS)
    constexprs = tile + (
        ("SUBTILE", subtile(cfg, point["epilogue"])),
        ("SPLIT_K", cfg.split_k),
        ("WARP_SPECIALIZE", cfg.warp_specialize),
        ("INPUT_PRECISION", "tf32"),  # fp32 only (exact fp32 runs the pointer kernel)
        ("PDL", True),
    )
    return Variant(
        kernel=TMA_KERNEL,
        signature=signature + batch_signature + tuple((name, "constexpr") for name, _ in constexprs)
        + (("BATCHED", "constexpr"),),
        constexprs=batch_constexprs + constexprs,
        launch_pdl=True,
        **common,
    )


def make_mm(point, arch, batched=False):
    dtype, precision = point["dtype"], point["precision"]
    if precision == "tf32" and dtype != "fp32":
        return None
    if arch in TMA_ARCHS and (dtype in ("fp16", "bf16") or precision == "tf32") and point["align"] == "aligned":
        return None  # unreachable there: whatever meets these hints meets TMA's, and mm_tma serves it
    a_row = point["a_layout"] == "row"
    b_row = point["b_layout"] == "row"
    # The unit stride of each operand is the constexpr 1; the other one is the leading stride.
    strides = {
        "stride_am": "i32" if a_row else "constexpr",
        "stride_ak": "constexpr" if a_row else "i32",
        "stride_bk": "i32" if b_row else "constexpr",
        "stride_bn": "constexpr" if b_row else "i32",
        "stride_cm": "i32",
        "stride_cn": "constexpr",
    }
    batch_signature, batch_constexprs = batch_arguments(batched, POINTER_BATCH_ARGUMENTS)
    block_m, block_n, block_k, group_m, num_warps, num_stages = config(dtype, precision, arch)
    signature = (
        ("a", ptr(dtype)),
        ("b", ptr(dtype)),
        ("c", ptr(dtype)),
        ("M", "i32"),
        ("N", "i32"),
        ("K", "i32"),
        *strides.items(),
        *batch_signature,
        ("BLOCK_M", "constexpr"),
        ("BLOCK_N", "constexpr"),
        ("BLOCK_K", "constexpr"),
        ("GROUP_M", "constexpr"),
        ("INPUT_PRECISION", "constexpr"),
        ("BATCHED", "constexpr"),
    )
    constexprs = tuple((name, 1) for name, t in strides.items() if t == "constexpr") + batch_constexprs + (
        ("BLOCK_M", block_m),
        ("BLOCK_N", block_n),
        ("BLOCK_K", block_k),
        ("GROUP_M", group_m),
        ("INPUT_PRECISION", precision),
    )
    divisible16 = ()
    if point["align"] == "aligned":
        leading = tuple(name for name, t in strides.items() if t == "i32")
        # Batched, each matrix starts 16 bytes aligned too: batch strides of 16 elements (or 0).
        batch = tuple(name for name, _, _ in POINTER_BATCH_ARGUMENTS) if batched else ()
        divisible16 = ("a", "b", "c", "N", "K") + (() if a_row else ("M",)) + leading + batch
    return Variant(
        kernel=KERNEL,
        signature=signature,
        constexprs=constexprs,
        divisible16=divisible16,
        num_warps=num_warps,
        num_stages=num_stages,
        launch_params=("BLOCK_M", "BLOCK_N"),
    )


def make_bmm(point, arch):
    return make_mm(point, arch, batched=True)


def make_bmm_tma(point, arch):
    return make_mm_tma(point, arch, batched=True)


POINTER_AXES = (
    ("dtype", FLOAT_DTYPES),
    ("precision", ("ieee", "tf32")),
    ("a_layout", ("row", "col")),
    ("b_layout", ("row", "col")),
    ("align", ("aligned", "general")),
)
CONFIG_AXIS = ("config", tuple(f"c{i}" for i in range(NUM_TMA_CONFIGS)))
GRIDS = [
    KernelGrid("mm", axes=POINTER_AXES, make=make_mm,
               doc="C[M,N] = A[M,K] @ B[K,N], fp32 accumulation, row-major C"),
    KernelGrid(
        "mm_tma",
        axes=(("dtype", FLOAT_DTYPES), ("a_layout", ("row", "col")), ("b_layout", ("row", "col")),
              ("epilogue", ("none", "bias")), CONFIG_AXIS),
        make=make_mm_tma,
        doc="persistent TMA mm / addmm: C[M,N] = alpha * A @ B (+ beta * bias[N]), row-major C",
    ),
    KernelGrid("bmm", axes=POINTER_AXES, make=make_bmm,
               doc="C[b,M,N] = A[b,M,K] @ B[b,K,N], program_id(1) = b, fp32 accumulation, row-major C"),
    KernelGrid(
        "bmm_tma",
        axes=(("dtype", FLOAT_DTYPES), ("a_layout", ("row", "col")), ("b_layout", ("row", "col")),
              ("epilogue", ("none", "full")), CONFIG_AXIS),
        make=make_bmm_tma,
        doc="persistent TMA bmm / baddbmm: C[b,M,N] = alpha * A[b] @ B[b] (+ beta * self[b,M,N]), row-major C",
    ),
]

# aten's schemas and results: aten's fake implementations serve them.
GEMS_OPS = [
    GemsOp("mm(Tensor self, Tensor mat2) -> Tensor", True, Example((T((6, 10)), T((10, 7))))),
    GemsOp("addmm(Tensor self, Tensor mat1, Tensor mat2, *, Scalar beta=1, Scalar alpha=1) -> Tensor", True,
           Example((T((7,)), T((6, 10)), T((10, 7))))),
    GemsOp("bmm(Tensor self, Tensor mat2) -> Tensor", True, Example((T((3, 6, 10)), T((3, 10, 7))))),
    GemsOp("baddbmm(Tensor self, Tensor batch1, Tensor batch2, *, Scalar beta=1, Scalar alpha=1) -> Tensor", True,
           Example((T((3, 6, 7)), T((3, 6, 10)), T((3, 10, 7))))),
]

# Every one has a CUDA kernel of its own in ATen (bmm.dtype and baddbmm.dtype, the out_dtype
# forms, are not served).
ATEN_OVERRIDES = [AtenOverride(name) for name in ("mm", "mm.out", "addmm", "addmm.out", "bmm", "bmm.out", "baddbmm",
                                                  "baddbmm.out", "baddbmm_")]

TUNING_HEADER = "gemm_tuning.h"


def generated_sources() -> dict:
    """The tuning tables as C++ arrays: [class][layout][m][n][k bucket] -> table entry."""
    lines = ["// Generated by aot/family_gemm.py from aot/tuning/sm<arch>.json. Do not edit.", "#pragma once", "",
             "#include <cstdint>", "", "namespace gems::gemm_tuning {", "",
             f"constexpr int kNumBuckets = {gemm_tuning.NUM_BUCKETS};",
             f"constexpr int kNumFineBuckets = {gemm_tuning.NUM_FINE_BUCKETS};",
             f"// Class index: {', '.join(f'{i} = {name}' for i, name in enumerate(gemm_tuning.CLASSES))}.",
             f"enum : int {{ {', '.join(f'k{name.capitalize()} = {i}' for i, name in enumerate(gemm_tuning.CLASSES))} }};",
             f"// Layout index: {', '.join(f'{i} = {name}' for i, name in enumerate(gemm_tuning.LAYOUTS))}"
             " (A then B; n = row-major, t = col-major).", ""]
    tabled = [arch for arch in TMA_ARCHS if gemm_tuning.load_table(arch)]
    for arch in tabled:
        values = [v for klass in gemm_tuning.CLASSES for v in gemm_tuning.dense_table(arch, klass)]
        lines.append(f"inline constexpr int8_t kSm{arch}[{len(values)}] = {{")
        for i in range(0, len(values), 256):
            lines.append(",".join(str(v) for v in values[i:i + 256]) + ",")
        lines.append("};")
    lines += ["", "// Octaves (N): ceil(log2(x)), clamped (aot/gemm_tuning.py bucket()).",
              "inline int bucket(int64_t x) {",
              "  const int b = x <= 1 ? 0 : 64 - __builtin_clzll(static_cast<uint64_t>(x - 1));",
              "  return b < kNumBuckets ? b : kNumBuckets - 1;", "}", "",
              "// Quarter octaves (M, K): 4 e + the two bits below the leading bit e of x - 1, + 1, clamped",
              "// (aot/gemm_tuning.py fine_bucket()).",
              "inline int fine_bucket(int64_t x) {",
              "  if (x <= 1) return 0;",
              "  const uint64_t y = static_cast<uint64_t>(x - 1);",
              "  const int e = 63 - __builtin_clzll(y);",
              "  const int quarter = static_cast<int>((e >= 2 ? y >> (e - 2) : y << (2 - e)) & 3);",
              "  const int b = 4 * e + quarter + 1;",
              "  return b < kNumFineBuckets ? b : kNumFineBuckets - 1;", "}", "",
              "// mm_skinny_kernel's split of K: about one program per SM, at most one split per chunk of",
              "// K, none empty (aot/gemm_tuning.py skinny_splits()).",
              "inline int64_t skinny_splits(int64_t tiles, int64_t chunks, int64_t sms) {",
              "  int64_t want = (sms + tiles - 1) / tiles;",
              "  want = want < 1 ? 1 : want > chunks ? chunks : want;",
              "  const int64_t per = (chunks + want - 1) / want;",
              "  return (chunks + per - 1) / per;", "}", "",
              "// The table entry for a problem on target arch: the mm_tma config index c >= 0 (0 for the",
              "// pointer kernel of class kIeee), or -(c + 1) where the bucket goes to ATen",
              "// (aot/gemm_tuning.py encode()); 0 on a target without a table (its one configuration).",
              "inline int entry_for(int arch, int klass, int layout, int64_t M, int64_t N, int64_t K) {",
              "  const int i = (((klass * 4 + layout) * kNumFineBuckets + fine_bucket(M)) * kNumBuckets + bucket(N)) *",
              "                    kNumFineBuckets + fine_bucket(K);",
              "  switch (arch) {"]
    lines += [f"    case {arch}: return kSm{arch}[i];" for arch in tabled]
    lines += ["    default: return 0;", "  }", "}", ""]
    # What info() reports: per target, the tuned cases the table sends to ATen.
    report = "".join(f"sm_{arch}\t{r['class']}\t{r['name']}\t{r['m']}x{r['n']}x{r['k']}\t{r['layout']}\t{r['ratio']}\n"
                     for arch in TMA_ARCHS for r in gemm_tuning.routed_cases(arch))
    cases = "".join(f"sm_{arch}\t{len((gemm_tuning.load_table(arch) or {'rows': []})['rows'])}\n" for arch in TMA_ARCHS)
    lines += [f'constexpr const char* kRoutedCases = R"gems({report})gems";',
              f'constexpr const char* kTunedCases = R"gems({cases})gems";', "",
              "}  // namespace gems::gemm_tuning", ""]
    return {TUNING_HEADER: "\n".join(lines)}


def bench_cases() -> list:
    return [bench_case("mm", "mm", "gemm", "matmul", FLOAT_DTYPES, inputs=2)]
