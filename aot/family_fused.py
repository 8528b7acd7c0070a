"""Fused family: silu_and_mul, gelu_and_mul (erf or tanh), rotary_embedding, and their backward.

Gems ops only (no aten op computes these): torch.ops.gems.silu_and_mul(x) = silu(a) * b and
torch.ops.gems.gelu_and_mul(x, approximate) = gelu(a, approximate) * b, where a, b are the two
halves of x's last dim (2H), each with a backward op that returns grad_x in one kernel, and
autograd (csrc/ops/fused.cpp) that calls them.

One grid, "act_and_mul", indexed by pass (fwd: kernels/fused.py:act_and_mul_fwd, bwd:
act_and_mul_bwd), activation, dtype, tile and alignment. The C++ driver picks the tile from H
(TILE_MAX_H below) and "16" where the pointers are 16-byte aligned and H and the row strides are
multiples of VEC = 16 bytes of elements (8 for fp16 / bf16, 4 for fp32); "any" otherwise.

torch.ops.gems.rotary_embedding(q, k, cos, sin, position_ids, interleaved) rotates q and k
([B, H, S, D], Hugging Face's layout) by the cos / sin rows of each (b, s) in the grid "rotary"
(kernels/fused.py:rotary_kernel; axes pass, dtype, pair layout, position ids, tile), one launch
for q and one for k; its backward op applies the transposed rotation to the gradients.
"""

from aot.ops import Example, GemsOp, T, bench_case
from aot.variants import FLOAT_DTYPES, KernelGrid, Variant, ptr


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
# The driver's choice: the first tile whose bound H does not exceed (generated into
# TILE_HEADER's tile_for, which csrc/ops/fused.cpp calls).
TILE_MAX_H = (("h64", 64), ("h256", 256), ("h1k", None))
TILE_HEADER = "gems_fused_tiles.h"

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


# rotary tile: (BLOCK_HALF pairs per head, BLOCK_H heads per program, num_warps); the driver takes
# the first whose pairs cover half the rotated dims (ROTARY_TILE_MAX_PAIRS, generated). About 2048
# elements of x per program. Untuned.
ROTARY_TILES = {
    "r64": (32, 32, 4),
    "r128": (64, 16, 4),
    "r256": (128, 8, 4),
}
ROTARY_PASSES = ("fwd", "bwd")
PAIR_LAYOUTS = ("half", "interleaved")  # (i, i + R/2) as Hugging Face's rotate_half; (2i, 2i + 1)
POSITIONS = ("none", "ids")  # cos / sin rows per (b, s), or gathered by position_ids[b, s]
_ROTARY_ARGS = (("x_ptr", "x"), ("out_ptr", "x"), ("cos_ptr", "x"), ("sin_ptr", "x"), ("pos_ptr", "*i64"),
                ("H", "i32"), ("S", "i32"), ("x_sb", "i64"), ("x_sh", "i64"), ("x_ss", "i64"), ("o_sb", "i64"),
                ("o_sh", "i64"), ("o_ss", "i64"), ("c_sb", "i64"), ("c_ss", "i64"), ("p_sb", "i64"), ("p_ss", "i64"),
                ("R_HALF", "i32"), ("D", "i32"))


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


def _rotary(point, arch):
    pass_, dtype, pairs, pos, tile = (point[a] for a in ("pass", "dtype", "pairs", "pos", "tile"))
    block_half, block_h, warps = ROTARY_TILES[tile]
    sig = tuple((n, ptr(dtype) if t == "x" else t) for n, t in _ROTARY_ARGS)
    consts = (("BLOCK_H", block_h), ("BLOCK_HALF", block_half), ("HAS_POS", pos == "ids"),
              ("INTERLEAVED", pairs == "interleaved"), ("BACKWARD", pass_ == "bwd"))
    return Variant(
        kernel="kernels.fused:rotary_kernel",
        signature=sig + tuple((n, "constexpr") for n, _ in consts),
        constexprs=consts,
        num_warps=warps,
        launch_params=("BLOCK_H", "BLOCK_HALF"),
    )


GRIDS = [
    KernelGrid(
        "act_and_mul",
        (("pass", PASSES), ("act", ACTS), ("dtype", FLOAT_DTYPES), ("tile", tuple(TILES)), ("align", ALIGNS)),
        _act_and_mul,
        doc="out = act(x[:, :H]) * x[:, H:] (fwd) and its gradient (bwd), rows of a [M, 2H] view; fp32 math",
    ),
    KernelGrid(
        "rotary",
        (("pass", ROTARY_PASSES), ("dtype", FLOAT_DTYPES), ("pairs", PAIR_LAYOUTS), ("pos", POSITIONS),
         ("tile", tuple(ROTARY_TILES))),
        _rotary,
        doc="x [B, H, S, D] rotated by cos / sin rows per (b, s) (fwd) or by the transposed rotation (bwd); fp32 math",
    ),
]

# No aten op computes these: their C++ Meta functions compute with SymInts. Examples: rows of
# 2H = 10; q [batch 2, 4 heads, seq 6, head_dim 8] and k of 2 heads rotated by cos / sin rows
# shared by the batch (forward) or by a table of 5 positions gathered by position_ids (backward).
_Q, _K = T((2, 4, 6, 8)), T((2, 2, 6, 8))
GEMS_OPS = [
    GemsOp("silu_and_mul(Tensor x) -> Tensor", example=Example((T((6, 10)),))),
    GemsOp('gelu_and_mul(Tensor x, str approximate="none") -> Tensor', example=Example((T((6, 10)), "tanh"))),
    GemsOp("silu_and_mul_backward(Tensor grad, Tensor x) -> Tensor", example=Example((T((6, 5)), T((6, 10))))),
    GemsOp('gelu_and_mul_backward(Tensor grad, Tensor x, str approximate="none") -> Tensor',
           example=Example((T((6, 5)), T((6, 10)), "tanh"))),
    GemsOp("rotary_embedding(Tensor q, Tensor k, Tensor cos, Tensor sin, Tensor? position_ids=None, "
           "bool interleaved=False) -> (Tensor, Tensor)", example=Example((_Q, _K, T((1, 6, 8)), T((1, 6, 8))))),
    GemsOp("rotary_embedding_backward(Tensor grad_q, Tensor grad_k, Tensor cos, Tensor sin, "
           "Tensor? position_ids=None, bool interleaved=False) -> (Tensor, Tensor)",
           example=Example((_Q, _K, T((5, 8)), T((5, 8)), T((2, 6), "i64"), True))),
]

ATEN_OVERRIDES = []


def generated_sources() -> dict:
    """The driver's tile choices, from TILE_MAX_H and ROTARY_TILES: one declaration for the C++ and
    the tests."""
    lines = ["// Generated by aot/family_fused.py from TILE_MAX_H. Do not edit.", "#pragma once", "",
             "#include <cstdint>", "", '#include "gems_kernels.h"', "", "namespace gems::fused_tiles {", "",
             "// The act_and_mul tile axis index for rows of h elements (each half).",
             "inline int tile_for(int64_t h) {"]
    for name, bound in TILE_MAX_H:
        choice = f"return gen::act_and_mul::tile_{name};"
        lines.append(f"  if (h <= {bound}) {choice}" if bound is not None else f"  {choice}")
    lines += ["}", "", "// The rotary tile axis index for rotated dims of 2 * pairs elements, or -1 past the largest.",
              "inline int rotary_tile_for(int64_t pairs) {"]
    for name, (block_half, _, _) in ROTARY_TILES.items():
        lines.append(f"  if (pairs <= {block_half}) return gen::rotary::tile_{name};")
    lines += ["  return -1;", "}", "", "// The most pairs a rotary tile takes (the checks compare symbolic sizes with it).",
              f"constexpr int64_t kRotaryMaxPairs = {max(block_half for block_half, _, _ in ROTARY_TILES.values())};",
              "", "}  // namespace gems::fused_tiles", ""]
    return {TILE_HEADER: "\n".join(lines)}


def bench_cases() -> list:
    return [bench_case("silu_and_mul", "gems::silu_and_mul", "fused", "act_and_mul", FLOAT_DTYPES),
            bench_case("gelu_and_mul", "gems::gelu_and_mul", "fused", "act_and_mul", FLOAT_DTYPES, extra_args=("tanh",)),
            bench_case("rotary_embedding", "gems::rotary_embedding", "fused", "rotary", FLOAT_DTYPES, inputs=4)]
