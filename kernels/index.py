"""Index kernels of aot/family_index.py: the row gather of embedding / index_select (dim 0) and
embedding_dense_backward.

gather_rows: out[i, :] = weight[idx[i * idx_s], :] for N positions over rows of D contiguous
elements (the weight is a contiguous [V, D] table, out a contiguous [N, D] result). A tile is
ROWS positions x BLOCK_D elements; with the alignment hints of the "16" variants the row loads and
stores are 16-byte vectors. An index outside [0, V) gives a NaN row and reads nothing (ATen
raises a device-side assert).

embedding_dense_backward: grad_weight[r, :] = sum over positions i with idx[i] == r (not
padding_idx) of grad[i, :] * scale, scale = 1 / count(r) with scale_grad_by_freq, else 1; fp32
sums, in increasing position order, so the result is the same bits every run. Five launches
over an int32 workspace (counts [V + 1], starts [V + 1], unsorted [N], sorted [N]; the counts
zeroed by the driver):
  count_rows       counts[r] += 1 per position (integer atomics: the counts are exact, whatever
                   the order); an index outside [0, V) counts in counts[V]
  scan_counts      starts[r] = counts[0] + ... + counts[r - 1] (one program)
  bucket_positions each position into its row's bucket [starts[r], starts[r + 1]), at a slot
                   its atomic decrement of counts[r] gives: the order within a bucket varies
  sort_buckets     each position to its rank in its bucket (how many positions of the bucket
                   are smaller), so every bucket is in increasing position order
  sum_rows         one program a row and BLOCK_D columns: the bucket's gradient rows summed in
                   that order, BLOCK_S rows a step (their sum a fixed tree, then added);
                   counts[V] > 0 (an index out of range) makes every row NaN, as the forward
                   gives NaN rows there
"""

import triton
import triton.language as tl

# Builtins only (tl.reduce, tl.associative_scan, tl.full, tl.where), not triton.language's @jit
# library (tl.sum, tl.cumsum, tl.max): the CPU tests run an interpreted copy of this module.


@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def _max(a, b):
    return tl.maximum(a, b)


@triton.jit
def gather_rows(w_ptr, idx_ptr, out_ptr, N, V, D, idx_s, d_blocks, ROWS: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    row_block = pid // d_blocks
    cols = (pid - row_block * d_blocks) * BLOCK_D + tl.arange(0, BLOCK_D)
    rows = row_block.to(tl.int64) * ROWS + tl.arange(0, ROWS)
    in_rows = rows < N
    idx = tl.load(idx_ptr + rows * idx_s, mask=in_rows, other=0).to(tl.int64)
    valid = (idx >= 0) & (idx < V)
    in_cols = cols[None, :] < D
    w = tl.load(w_ptr + idx[:, None] * D + cols[None, :], mask=valid[:, None] & in_cols)
    # In fp32 (exact both ways): the interpreter has no 16-bit NaN constant.
    w = tl.where(valid[:, None], w.to(tl.float32), float("nan")).to(out_ptr.dtype.element_ty)
    tl.store(out_ptr + rows[:, None] * D + cols[None, :], w, mask=in_rows[:, None] & in_cols)


@triton.jit
def count_rows(idx_ptr, counts_ptr, N, V, padding_idx, BLOCK: tl.constexpr):
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = i < N
    idx = tl.load(idx_ptr + i, mask=live, other=0).to(tl.int64)
    valid = (idx >= 0) & (idx < V)
    row = tl.where(valid, idx, V)
    ones = tl.full([BLOCK], 1, tl.int32)
    tl.atomic_add(counts_ptr + row, ones, mask=live & (~valid | (idx != padding_idx)), sem="relaxed")


@triton.jit
def scan_counts(counts_ptr, starts_ptr, V, BLOCK: tl.constexpr):
    lanes = tl.arange(0, BLOCK)
    tl.store(starts_ptr + lanes, tl.full([BLOCK], 0, tl.int32), mask=lanes == 0)
    carry = tl.full([], 0, tl.int32)
    for r0 in range(0, V, BLOCK):
        r = r0 + lanes
        c = tl.load(counts_ptr + r, mask=r < V, other=0)
        tl.store(starts_ptr + r + 1, carry + tl.associative_scan(c, 0, _add), mask=r < V)
        carry += tl.reduce(c, 0, _add)


@triton.jit
def bucket_positions(idx_ptr, counts_ptr, starts_ptr, unsorted_ptr, N, V, padding_idx, BLOCK: tl.constexpr):
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    idx = tl.load(idx_ptr + i, mask=i < N, other=0).to(tl.int64)
    keep = (i < N) & (idx >= 0) & (idx < V) & (idx != padding_idx)
    left = tl.atomic_add(counts_ptr + idx, tl.full([BLOCK], -1, tl.int32), mask=keep, sem="relaxed")
    start = tl.load(starts_ptr + idx, mask=keep, other=0)
    tl.store(unsorted_ptr + start + left - 1, i.to(tl.int32), mask=keep)


@triton.jit
def sort_buckets(idx_ptr, starts_ptr, unsorted_ptr, sorted_ptr, V, BLOCK: tl.constexpr, BLOCK_J: tl.constexpr):
    s = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = s < tl.load(starts_ptr + V)
    p = tl.load(unsorted_ptr + s, mask=live, other=0)
    row = tl.load(idx_ptr + p, mask=live, other=0).to(tl.int64)
    start = tl.load(starts_ptr + row, mask=live, other=0)
    length = tl.load(starts_ptr + row + 1, mask=live, other=0) - start
    rank = tl.full([BLOCK], 0, tl.int32)
    js = tl.arange(0, BLOCK_J)
    for j0 in range(0, tl.reduce(length, 0, _max), BLOCK_J):
        j = j0 + js[None, :]
        inside = live[:, None] & (j < length[:, None])
        q = tl.load(unsorted_ptr + start[:, None] + j, mask=inside, other=0)
        rank += tl.reduce((inside & (q < p[:, None])).to(tl.int32), 1, _add)
    tl.store(sorted_ptr + start + rank, p, mask=live)


@triton.jit
def sum_rows(g_ptr, counts_ptr, starts_ptr, sorted_ptr, out_ptr, V, D, d_blocks, FREQ: tl.constexpr,
             BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    row = pid // d_blocks
    cols = (pid - row * d_blocks) * BLOCK_D + tl.arange(0, BLOCK_D)
    in_cols = cols < D
    start = tl.load(starts_ptr + row)
    end = tl.load(starts_ptr + row + 1)
    scale = 1.0
    if FREQ:  # ATen's: 1 / count in fp32, applied to each term
        scale = tl.math.div_rn(1.0, tl.maximum(end - start, 1).to(tl.float32))
    # BLOCK_S gradient rows in flight a step (a hot row's loads overlap), added in a fixed tree.
    acc = tl.full([BLOCK_D], 0.0, tl.float32)
    for s0 in range(start, end, BLOCK_S):
        s = s0 + tl.arange(0, BLOCK_S)
        p = tl.load(sorted_ptr + s, mask=s < end, other=0).to(tl.int64)
        g = tl.load(g_ptr + p[:, None] * D + cols[None, :], mask=(s < end)[:, None] & in_cols[None, :], other=0.0)
        acc += tl.reduce(g.to(tl.float32) * scale, 0, _add)
    acc = tl.where(tl.load(counts_ptr + V) > 0, float("nan"), acc)
    tl.store(out_ptr + row.to(tl.int64) * D + cols, acc.to(out_ptr.dtype.element_ty), mask=in_cols)
