"""Fused activation family: silu_and_mul, gelu_and_mul (erf or tanh) and their backward.

Gems ops only (no aten op computes these): torch.ops.gems.silu_and_mul(x) = silu(a) * b and
torch.ops.gems.gelu_and_mul(x, approximate) = gelu(a, approximate) * b, where a, b are the two
halves of x's last dim (2H), each with a backward op that returns grad_x in one kernel, and
autograd (csrc/ops/fused.cpp) that calls them.

One grid, "act_and_mul", indexed by pass (fwd: kernels/fused.py:act_and_mul_fwd, bwd:
act_and_mul_bwd), activation, dtype, tile and alignment. The C++ driver picks the tile from H
(TILE_MAX_H below) and "16" where the pointers are 16-byte aligned and H and the row strides are
multiples of VEC = 16 bytes of elements (8 for fp16 / bf16, 4 for fp32); "any" otherwise.
"""

from aot.ops import GemsOp
from aot.variants import FLOAT_DTYPES, KernelGrid, Variant, ptr

CPP_HEADER = "ops/fused.h"

PASSES = ("fwd", "bwd")
ACTS = ("silu", "gelu", "gelu_tanh")
ALIGNS = ("any", "16")
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}

# tile: (BLOCK_M rows, BLOCK_N columns of each half, num_warps). About 1024 elements of each half
# per program; short rows share a program. Untuned (no GPU measurements yet).
TILES = {
    "h64": (16, 64, 4),
    "h256": (4, 256, 4),
    "h1k": (1, 1024, 4),
}
# The driver's choice (csrc/ops/fused.cpp kTileMaxH): the first tile whose bound H does not exceed.
TILE_MAX_H = (("h64", 64), ("h256", 256), ("h1k", None))

_ARGS = {
    "fwd": (("x_ptr", "x"), ("out_ptr", "x"), ("M", "i64"), ("H_v", "i32"), ("x_row_v", "i64")),
    "bwd": (
        ("grad_ptr", "x"),
        ("x_ptr", "x"),
        ("dx_ptr", "x"),
        ("M", "i64"),
        ("H_v", "i32"),
        ("grad_row_v", "i64"),
        ("x_row_v", "i64"),
    ),
}


def tile_for(h: int) -> str:
    """The tile the driver runs for rows of H elements (each half)."""
    return next(name for name, bound in TILE_MAX_H if bound is None or h <= bound)


def _act_and_mul(point, arch):
    pass_, act, dtype, tile, align = (point[a] for a in ("pass", "act", "dtype", "tile", "align"))
    block_m, block_n, warps = TILES[tile]
    vec = 16 // ELEMENT_BYTES[dtype] if align == "16" else 1
    sig = tuple((n, ptr(dtype) if t == "x" else t) for n, t in _ARGS[pass_])
    consts = (("ACT", act), ("VEC", vec), ("BLOCK_M", block_m), ("BLOCK_N", block_n))
    pointers = tuple(n for n, t in _ARGS[pass_] if t == "x")
    return Variant(
        kernel=f"kernels.fused:act_and_mul_{pass_}",
        signature=sig + tuple((n, "constexpr") for n, _ in consts),
        constexprs=consts,
        divisible16=pointers if align == "16" else (),
        num_warps=warps,
        launch_params=("VEC", "BLOCK_M", "BLOCK_N"),
    )


GRIDS = [
    KernelGrid(
        "act_and_mul",
        (("pass", PASSES), ("act", ACTS), ("dtype", FLOAT_DTYPES), ("tile", tuple(TILES)), ("align", ALIGNS)),
        _act_and_mul,
        doc="out = act(x[:, :H]) * x[:, H:] (fwd) and its gradient (bwd), rows of a [M, 2H] view; fp32 math",
    ),
]

GEMS_OPS = [
    GemsOp("silu_and_mul(Tensor x) -> Tensor"),
    GemsOp('gelu_and_mul(Tensor x, str approximate="none") -> Tensor'),
    GemsOp("silu_and_mul_backward(Tensor grad, Tensor x) -> Tensor"),
    GemsOp('gelu_and_mul_backward(Tensor grad, Tensor x, str approximate="none") -> Tensor'),
]

ATEN_OVERRIDES = []
