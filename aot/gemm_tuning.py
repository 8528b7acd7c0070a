"""GEMM tuning data: the tile configurations, the shape buckets, and the per-arch tables.

Three dtype classes: "16bit" (fp16 and bf16, tuned in bf16) and "tf32" (fp32 when ATen would let
cuBLAS use TF32) run a TMA kernel in a tuned configuration; "ieee" (exact fp32) runs the pointer
kernel, and its table only decides routing. A configuration names its kernel: "tl"
(kernels/gemm.py:mm_tma_kernel, triton.language, every TMA target, split-K), "wgmma"
(kernels/gemm_wgmma.py:mm_wgmma_kernel, Gluon, warp-specialised, sm_90a 16-bit only) or "skinny"
(kernels/gemm_skinny.py:mm_skinny_kernel: C^T = B^T A^T for few rows, split along K to about one
program per SM; not batched).

A table (aot/tuning/sm<arch>.json, written by build_tools/tune_gemm.py on a GPU and committed)
lists per class the configurations it uses and, per measured case (class, layout, M, N, K), the
index of the fastest configuration and whether it stayed below ROUTE_TO_ATEN of cuBLAS ("aten":
the aten override then sends that bucket to ATen's kernel; torch.ops.gems.mm still runs gems'
kernel). The build compiles exactly the configurations a table names and turns the rows into a
dense bucket -> configuration array: the runtime picks with integer arithmetic, no timing.

Buckets: N (a layer's width) by octave, ceil(log2(x)) clamped to NUM_BUCKETS - 1 (1, 2, 3-4,
5-8, ..., 16385+); M and K, where token counts land (M in forward and input-gradient matmuls, K in
weight gradients), by quarter octave (fine_bucket: 2049-2560, 2561-3072, 3073-3584, 3585-4096,
...), so that an uneven batch of 3000 tokens gets its own measured configuration instead of the
4096-token one. A bucket no measured case falls into takes the nearest measured one of the same
layout (routed to ATen where that case is far, or of another layout).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

TUNING_DIR = pathlib.Path(__file__).resolve().parent / "tuning"
NUM_BUCKETS = 16  # octaves of N
NUM_FINE_BUCKETS = 64  # quarter octaves of M and K (clamped past 65536)
LAYOUTS = ("nn", "nt", "tn", "tt")  # A row/col ("n"/"t") then B row/col
CLASSES = ("16bit", "tf32", "ieee")
# A bucket whose best configuration stays below this share of cuBLAS goes to ATen: an aten override
# must never be slower than ATen, so gems serves only where its kernel measured at least as fast.
ROUTE_TO_ATEN = 1.0


@dataclasses.dataclass(frozen=True)
class TmaConfig:
    """A tile configuration of one of the TMA kernels (num_stages is the wgmma kernel's buffer count)."""

    block_m: int
    block_n: int
    block_k: int
    group_m: int
    num_warps: int
    num_stages: int
    subtile: int = 1
    warp_specialize: bool = False
    split_k: int = 1
    kernel: str = "tl"  # "tl" (mm_tma_kernel), "wgmma" (mm_wgmma_kernel) or "skinny" (mm_skinny_kernel)

    def as_list(self) -> list:
        return [self.block_m, self.block_n, self.block_k, self.group_m, self.num_warps, self.num_stages, self.subtile,
                int(self.warp_specialize), self.split_k, self.kernel]

    @classmethod
    def from_list(cls, v) -> "TmaConfig":
        # Tables written before the wgmma kernel existed have nine fields: all "tl".
        return cls(*v[:7], bool(v[7]), v[8], *v[9:10])

    @property
    def name(self) -> str:
        if self.kernel == "skinny":
            return f"sk_{self.block_m}x{self.block_n}x{self.block_k}_w{self.num_warps}_s{self.num_stages}"
        if self.kernel == "wgmma":
            return f"wg_{self.block_m}x{self.block_n}x{self.block_k}_g{self.group_m}_w{self.num_warps}_b{self.num_stages}"
        ws = "_ws" if self.warp_specialize else ""
        split = f"_k{self.split_k}" if self.split_k > 1 else ""
        return (f"{self.block_m}x{self.block_n}x{self.block_k}_g{self.group_m}_w{self.num_warps}_s{self.num_stages}"
                f"_e{self.subtile}{ws}{split}")


# The few-rows kernel's tiles (BLOCK_M is the rows of A a program takes: 16, wgmma's narrowest
# useful width, up to 128). A JIT sweep on an H100 (bf16, the decode shapes, one program per SM)
# found 64 or 128 columns of C per program with 64-256 of K per step, 4 stages, fastest: 0.97-1.28x
# cuBLAS at M = 1 and 16, against 0.66-0.98x for the TMA kernels' best.
SKINNY_CANDIDATES = (
    TmaConfig(16, 64, 256, 1, 4, 4, kernel="skinny"),
    TmaConfig(16, 64, 128, 1, 4, 4, kernel="skinny"),
    TmaConfig(16, 128, 128, 1, 4, 4, kernel="skinny"),
    TmaConfig(64, 64, 128, 1, 4, 4, kernel="skinny"),
    TmaConfig(64, 64, 64, 1, 4, 4, kernel="skinny"),
    TmaConfig(128, 64, 64, 1, 4, 4, kernel="skinny"),
)

# What the tuner tries on Hopper (sm_90a): the large tiles of the public persistent kernels
# (128x256x64 with 8 warps and 3 stages, 128x128 with 4-5 stages, 256x128), their epilogue
# subtiling and warp-specialised forms, 64-row tiles (one warpgroup, wgmma's smallest M) for
# decode and for problems with too few large tiles to fill the SMs (k/v projections, N = 512),
# and split-K forms of the small tiles for the same problems when K is long. Then the Gluon
# kernel's tiles (wgmma's widest instruction, 128x256 with 3 buffers and the full tile's TMA store;
# 128x128 and 64-row tiles with more buffers for shapes with few tiles): measured on an H100 it ran
# at 0.92-1.10x cuBLAS on LLM training shapes and 0.8-0.9x at M = 16..128, where mm_tma_kernel
# ran at 0.91-1.10x and 0.68-0.69x.
SM90_CANDIDATES = (
    TmaConfig(128, 256, 64, 8, 8, 3, 2),
    TmaConfig(128, 256, 64, 8, 8, 3, 1),
    TmaConfig(128, 256, 64, 8, 8, 4, 4),
    TmaConfig(128, 256, 64, 8, 8, 3, 2, True),
    TmaConfig(256, 128, 64, 8, 8, 3, 2),
    TmaConfig(128, 128, 64, 8, 8, 4, 1),
    TmaConfig(128, 128, 64, 8, 4, 4, 1),
    TmaConfig(128, 128, 128, 8, 8, 3, 2),
    TmaConfig(128, 128, 64, 8, 8, 5, 2, True),
    TmaConfig(128, 64, 64, 8, 4, 6, 1),
    TmaConfig(64, 256, 64, 8, 4, 4, 2),
    TmaConfig(64, 128, 128, 8, 4, 4, 1),
    TmaConfig(64, 128, 64, 8, 4, 6, 1),
    TmaConfig(64, 64, 128, 8, 4, 5, 1),
    TmaConfig(64, 64, 256, 8, 4, 3, 1),
    TmaConfig(64, 64, 128, 8, 4, 4, 1, split_k=2),
    TmaConfig(64, 64, 128, 8, 4, 4, 1, split_k=4),
    TmaConfig(64, 64, 128, 8, 4, 4, 1, split_k=8),
    TmaConfig(64, 128, 128, 8, 4, 4, 1, split_k=4),
    TmaConfig(128, 128, 64, 8, 8, 4, 1, split_k=2),
    TmaConfig(128, 128, 64, 8, 8, 4, 1, split_k=4),
    TmaConfig(128, 256, 64, 8, 8, 3, kernel="wgmma"),
    TmaConfig(256, 128, 64, 8, 8, 3, kernel="wgmma"),
    TmaConfig(128, 128, 64, 8, 8, 5, kernel="wgmma"),
    TmaConfig(128, 128, 64, 8, 4, 5, kernel="wgmma"),
    TmaConfig(64, 256, 64, 8, 4, 4, kernel="wgmma"),
    TmaConfig(64, 128, 64, 8, 4, 6, kernel="wgmma"),
    *SKINNY_CANDIDATES,
)

# TF32 tiles: fp32 takes twice the bytes, so BLOCK_K halves for the same shared memory.
SM90_TF32_CANDIDATES = (
    TmaConfig(128, 256, 32, 8, 8, 3, 2),
    TmaConfig(128, 128, 32, 8, 8, 4, 1),
    TmaConfig(128, 128, 32, 8, 4, 4, 1),
    TmaConfig(128, 64, 32, 8, 4, 5, 1),
    TmaConfig(64, 128, 32, 8, 4, 5, 1),
    TmaConfig(64, 64, 64, 8, 4, 4, 1),
    TmaConfig(64, 64, 64, 8, 4, 4, 1, split_k=4),
    TmaConfig(128, 128, 32, 8, 8, 4, 1, split_k=2),
)
CANDIDATES = {"16bit": SM90_CANDIDATES, "tf32": SM90_TF32_CANDIDATES, "ieee": ()}

# Targets without a committed table use one configuration everywhere: on Hopper the tile of the
# public persistent kernels; on Blackwell the same with a 4th stage (B200 has 228 KiB per SM).
DEFAULT_CONFIG = {
    90: {"16bit": TmaConfig(128, 256, 64, 8, 8, 3, 2), "tf32": TmaConfig(128, 128, 32, 8, 8, 4, 1)},
    100: {"16bit": TmaConfig(128, 256, 64, 8, 8, 4, 2, True), "tf32": TmaConfig(128, 128, 32, 8, 8, 4, 1)},
}
TMA_CLASSES = ("16bit", "tf32")


def batched_tile(cfg: TmaConfig) -> TmaConfig:
    """What a batched problem runs for a skinny configuration: mm_tma_kernel (the skinny kernel is
    not batched) with the tile at wgmma's 64 rows and at most 128 of K per stage, within shared
    memory."""
    return TmaConfig(max(cfg.block_m, 64), cfg.block_n, min(cfg.block_k, 128), 8, 4, cfg.num_stages)


def skinny_splits(tiles: int, chunks: int, sms: int) -> int:
    """mm_skinny_kernel's split of K: about one program per SM over `tiles` output tiles, at most
    one split per BLOCK_K chunk of K, and no empty split (the kernel gives each split
    ceil(chunks / splits) chunks); the generated C++ computes the same."""
    want = min(max(-(-sms // tiles), 1), chunks)
    per = -(-chunks // want)
    return -(-chunks // per)


def bucket(x: int) -> int:
    """ceil(log2(x)) for x >= 1, clamped; the generated C++ computes the same."""
    return min(max(int(x) - 1, 0).bit_length(), NUM_BUCKETS - 1)


def fine_bucket(x: int) -> int:
    """Quarter octaves: for y = x - 1 with its leading bit at e, 4 e + (the two bits below it) + 1,
    clamped (0 for x <= 1); the generated C++ computes the same with integer shifts."""
    y = int(x) - 1
    if y <= 0:
        return 0
    e = y.bit_length() - 1
    quarter = (y >> (e - 2) if e >= 2 else y << (2 - e)) & 3
    return min(4 * e + quarter + 1, NUM_FINE_BUCKETS - 1)


CLASS_ENTRIES = len(LAYOUTS) * NUM_FINE_BUCKETS * NUM_BUCKETS * NUM_FINE_BUCKETS


def index(layout: int, m: int, n: int, k: int) -> int:
    """A problem's entry within its class's dense table: [layout][M][N][K bucket]."""
    return ((layout * NUM_FINE_BUCKETS + fine_bucket(m)) * NUM_BUCKETS + bucket(n)) * NUM_FINE_BUCKETS + fine_bucket(k)


def table_path(arch: int) -> pathlib.Path:
    return TUNING_DIR / f"sm{arch}.json"


def load_table(arch: int):
    path = table_path(arch)
    if not path.exists():
        return None
    return json.loads(path.read_text())


def configs_for(arch: int, klass: str) -> tuple:
    """The mm_tma configurations compiled for a target and class: the table's, else the default
    one (none on targets without TMA, and none for "ieee")."""
    table = load_table(arch)
    if table and table["classes"].get(klass, {}).get("configs"):
        return tuple(TmaConfig.from_list(c) for c in table["classes"][klass]["configs"])
    return (DEFAULT_CONFIG[arch][klass],) if klass in DEFAULT_CONFIG.get(arch, {}) else ()


# How far (in the distance of dense_table) a measured case speaks for an unmeasured bucket: M two
# octaves away, or M one octave and N one octave, or K four octaves.
NEAR_ENOUGH = 16


def encode(config, aten):
    """A dense table entry: the configuration index, or -(index + 1) where the bucket goes to ATen
    (ints, or numpy arrays elementwise)."""
    return config - aten * (2 * config + 1)


def dense_table(arch: int, klass: str) -> list:
    """[layout][m][n][k bucket] -> encode(config, aten), flattened (see index()); 0 everywhere for
    a target or class without measured cases."""
    import numpy as np

    rows = [r for r in (load_table(arch) or {"rows": []})["rows"] if r["class"] == klass]
    if not rows:
        return [0] * CLASS_ENTRIES
    mb, nb, kb = np.meshgrid(np.arange(NUM_FINE_BUCKETS), np.arange(NUM_BUCKETS), np.arange(NUM_FINE_BUCKETS),
                             indexing="ij")
    grid = np.stack([mb.ravel(), nb.ravel(), kb.ravel()], axis=1)
    out = []
    for layout in LAYOUTS:
        measured = [r for r in rows if r["layout"] == layout]
        same = measured or rows
        points = np.array([(fine_bucket(r["m"]), bucket(r["n"]), fine_bucket(r["k"])) for r in same])
        configs = np.array([r["config"] for r in same])
        served = np.array([not r["aten"] for r in same])
        # Nearest measured case, in octaves with M weighing most (it decides the tile): 2 |dM| +
        # |dN| + |dK|, counted in quarter octaves. Ties go to the earlier row (argmin takes the
        # first), so the choice is deterministic.
        d = (np.abs(grid[:, None, :] - points[None, :, :]) * np.array([2, 4, 1])).sum(axis=2)
        nearest = d.argmin(axis=1)
        # The aten override serves a bucket only where a measurement of its layout vouches for it:
        # far from every measured case (an N of 1 beside the 8192^3 square, a layout the shape set
        # lacks) nothing says gems is not slower than ATen.
        vouched = served[nearest] & (d.min(axis=1) <= NEAR_ENOUGH) & bool(measured)
        out += encode(configs[nearest], ~vouched).tolist()
    return out


def routed_cases(arch: int) -> list:
    """The measured cases (all classes) the table sends to ATen."""
    table = load_table(arch) or {"rows": []}
    return [r for r in table["rows"] if r["aten"]]
