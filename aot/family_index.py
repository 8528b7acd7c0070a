"""Index family: embedding (aten::embedding, whose CompositeExplicitAutograd kernel this replaces
at the CUDA key), index_select along dim 0 (functional and out=) and embedding_dense_backward, as
aten overrides and gems ops with aten's schemas.

Its three places: the kernels (kernels/index.py), these declarations, and the C++ driver
(csrc/ops/index.cpp), which checks the arguments, plans and launches; anything it does not cover
(another dim, a strided weight or input, fp64 and integer tables, operands on several devices)
goes to ATen's kernel, counted, which raises ATen's errors for arguments ATen rejects.

Where ATen raises a device-side assert (an index out of range), the forward gives a NaN row and
reads nothing out of bounds, and the backward gives a NaN gradient (every row: the position has
no row of its own to mark) and writes nothing out of bounds.

Grids:
- "gather_rows" (kernels/index.py:gather_rows): index dtype, table dtype and alignment ("16":
  the table and the result 16-byte aligned and D a multiple of 16 elements: 16-byte vectors).
  ROWS positions x BLOCK_D elements a program.
- "embedding_bucket" (count_rows, bucket_positions, sort_buckets): the index dtype and the step
  of the backward's counting sort; "embedding_scan" (scan_counts): the bucket starts.
- "embedding_sum" (sum_rows): dtype, alignment and scale_grad_by_freq: each row's gradient, its
  bucket's gradient rows summed in fp32 in position order.

The backward is deterministic without a float atomic: integer atomics count the positions of
each row (exact whatever their order) and place them into per-row buckets; the buckets are then
sorted by position, so each row's sum has one order. A row referenced by many positions is
summed by one program (per BLOCK_D columns): a hot row costs its length in sequential steps.
"""

from __future__ import annotations

from aot import schemas
from aot.ops import AtenOverride, Example, GemsOp, T
from aot.variants import FLOAT_DTYPES, INT_DTYPES, KernelGrid, Variant, ptr

KERNELS = "kernels.index"
ALIGNS = ("any", "16")
# Untuned (no GPU measurements yet): a gather tile of ROWS positions x BLOCK_D elements (one or
# two 16-byte vectors a thread and row at 4 warps), the sum's tile (SUM_ROWS gradient rows a step
# x SUM_BLOCK_D columns), the counting sort's positions a program (SORT_J: the bucket entries each
# compare step loads) and the scan's counts a step (its one program walks the vocabulary).
GATHER_ROWS, GATHER_BLOCK_D, SUM_ROWS, SUM_BLOCK_D, WARPS = 4, 1024, 8, 1024, 4
SCATTER_BLOCK, SORT_BLOCK, SORT_J, SCAN_BLOCK, SCAN_WARPS = 1024, 128, 32, 8192, 8
STEPS = ("count", "bucket", "sort")


def _make_gather(point, arch):
    dtype, idx = point["dtype"], point["idx"]
    sig = (("w_ptr", ptr(dtype)), ("idx_ptr", ptr(idx)), ("out_ptr", ptr(dtype)), ("N", "i64"), ("V", "i64"),
           ("D", "i64"), ("idx_s", "i64"), ("d_blocks", "i32"), ("ROWS", "constexpr"), ("BLOCK_D", "constexpr"))
    return Variant(kernel=f"{KERNELS}:gather_rows", signature=sig,
                   constexprs=(("ROWS", GATHER_ROWS), ("BLOCK_D", GATHER_BLOCK_D)),
                   divisible16=("w_ptr", "out_ptr", "D") if point["align"] == "16" else (), num_warps=WARPS,
                   launch_params=("ROWS", "BLOCK_D"))


def _make_bucket(point, arch):
    idx, step = ptr(point["idx"]), point["step"]
    i32 = ptr("i32")
    if step == "count":
        sig = (("idx_ptr", idx), ("counts_ptr", i32), ("N", "i64"), ("V", "i64"), ("padding_idx", "i64"))
        consts = (("BLOCK", SCATTER_BLOCK),)
    elif step == "bucket":
        sig = (("idx_ptr", idx), ("counts_ptr", i32), ("starts_ptr", i32), ("unsorted_ptr", i32), ("N", "i64"),
               ("V", "i64"), ("padding_idx", "i64"))
        consts = (("BLOCK", SCATTER_BLOCK),)
    else:
        sig = (("idx_ptr", idx), ("starts_ptr", i32), ("unsorted_ptr", i32), ("sorted_ptr", i32), ("V", "i64"))
        consts = (("BLOCK", SORT_BLOCK), ("BLOCK_J", SORT_J))
    sig += tuple((n, "constexpr") for n, _ in consts)
    kernel = {"count": "count_rows", "bucket": "bucket_positions", "sort": "sort_buckets"}[step]
    return Variant(kernel=f"{KERNELS}:{kernel}", signature=sig, constexprs=consts, num_warps=WARPS,
                   launch_params=("BLOCK",))


def _make_scan(point, arch):
    sig = (("counts_ptr", ptr("i32")), ("starts_ptr", ptr("i32")), ("V", "i64"), ("BLOCK", "constexpr"))
    return Variant(kernel=f"{KERNELS}:scan_counts", signature=sig, constexprs=(("BLOCK", SCAN_BLOCK),),
                   num_warps=SCAN_WARPS)


def _make_sum(point, arch):
    dtype, i32 = point["dtype"], ptr("i32")
    sig = (("g_ptr", ptr(dtype)), ("counts_ptr", i32), ("starts_ptr", i32), ("sorted_ptr", i32),
           ("out_ptr", ptr(dtype)), ("V", "i64"), ("D", "i64"), ("d_blocks", "i32"), ("FREQ", "constexpr"),
           ("BLOCK_S", "constexpr"), ("BLOCK_D", "constexpr"))
    return Variant(kernel=f"{KERNELS}:sum_rows", signature=sig,
                   constexprs=(("FREQ", point["freq"] == "scaled"), ("BLOCK_S", SUM_ROWS), ("BLOCK_D", SUM_BLOCK_D)),
                   divisible16=("g_ptr", "out_ptr", "D") if point["align"] == "16" else (), num_warps=WARPS,
                   launch_params=("BLOCK_D",))


GRIDS = [
    KernelGrid("gather_rows", (("idx", INT_DTYPES), ("dtype", FLOAT_DTYPES), ("align", ALIGNS)), _make_gather,
               doc="rows of a [V, D] table at the given indices (NaN rows for indices out of range)"),
    KernelGrid("embedding_bucket", (("step", STEPS), ("idx", INT_DTYPES)), _make_bucket,
               doc="the embedding backward's counting sort of positions by row: count, bucket, sort"),
    KernelGrid("embedding_scan", (("counts", ("i32",)),), _make_scan,
               doc="each row's bucket start from the row counts (one program)"),
    KernelGrid("embedding_sum", (("dtype", FLOAT_DTYPES), ("align", ALIGNS), ("freq", ("plain", "scaled"))),
               _make_sum, doc="each weight row's gradient: its positions' gradient rows summed in fp32"),
]

# The aten overloads (embedding: CompositeExplicitAutograd; the others with a CUDA kernel of their
# own). embedding_dense_backward.out is a composite of the functional one. Opt-in until measured.
OVERRIDES = ("embedding", "embedding_dense_backward", "index_select", "index_select.out")
# The gems ops mirror the functional aten ops; the aten op is their fake implementation.
EXAMPLES = {
    "embedding": Example((T((10, 6)), T((2, 3), "i64"))),
    "embedding_dense_backward": Example((T((2, 3, 6)), T((2, 3), "i64"), 10, -1, False)),
    "index_select": Example((T((10, 6)), 0, T((4,), "i64"))),
}
GEMS_OPS = [GemsOp(str(schemas.aten_schema(name)).removeprefix("aten::"), meta_from_aten=True, example=EXAMPLES[name])
            for name in OVERRIDES if "." not in name]
ATEN_OVERRIDES = [AtenOverride(name, opt_in=True) for name in OVERRIDES]


# -- benchmark ----------------------------------------------------------------------------------

BENCH_VOCABS = (32000, 128256)
BENCH_SIZES = ("4096x2048", "16384x4096")  # tokens x hidden


def _case(op, call, vocab, roles, args, reads, result):
    """An "embedding" benchmark case (python/gems_aot/_bench.py): inputs by role (table: the
    [vocab, hidden] weight; ids: int64 token ids; grad: [tokens, hidden]); args: ("tensor", i),
    ("vocab", i) (the table rows, for the ids of input i) or ("value", v); result: "gathered"
    ([tokens, hidden], its rows read from the table too) or "table" ([vocab, hidden])."""
    spec = [{k: v} for k, v in args]
    calls = {dt: {"tensors": ["i64" if r == "ids" else dt for r in roles], "args": spec, "kwargs": {},
                  "reads": list(reads), "out": dt} for dt in FLOAT_DTYPES}
    return {"op": op, "call": call, "family": "index", "kind": "embedding", "calls": calls, "roles": list(roles),
            "vocab": vocab, "result": result, "sizes": list(BENCH_SIZES)}


def bench_cases() -> list:
    """The embedding forward (aten::embedding) and its backward (embedding_dense_backward, no
    padding_idx) over Llama 2 / Llama 3 vocabularies, uniform token ids."""
    cases = []
    for vocab in BENCH_VOCABS:
        cases.append(_case(f"embedding_v{vocab}", "embedding", vocab, ("table", "ids"), (("tensor", 0), ("tensor", 1)),
                           (1,), "gathered"))
        cases.append(_case(f"embedding_dense_backward_v{vocab}", "embedding_dense_backward", vocab, ("grad", "ids"),
                           (("tensor", 0), ("tensor", 1), ("vocab", 1), ("value", -1), ("value", False)), (0, 1),
                           "table"))
    return cases
