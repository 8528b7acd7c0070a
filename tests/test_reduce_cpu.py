"""CPU tests of the reduce family: kernel math under the interpreter for every reduction, the
planner (aot/family_reduce.py, and its C++ form compiled with g++ and compared), declarations,
generated sources, Meta functions and the AOT compile.

The interpreted kernels run the launches the driver makes: plan, VEC and split come from the
Python planner in aot/family_reduce.py; `kernel_args` turns them into the kernel's arguments as
csrc/ops/reduce.cpp launch_prepared does, and `run` sequences a split's two launches as its
run() does. An indexed reduction (argmax, max.dim) gets the index strides reduce_into() gives.
"""

import itertools
import math
import shutil
import subprocess

import pytest
import torch
from conftest import ROOT, interpreted, skip_without_interpreter_loops

from aot import family_reduce as fam
from aot import schemas
from aot.variants import DTYPES

GRID = fam.GRIDS[0]
ARCHS = (80, 90, 100)
NAMES = [r.name for r in fam.REDUCTIONS]
EXACT = {r.name for r in fam.REDUCTIONS if fam.COMBINES[r.combine].exact}  # results are input elements
INDEXED = [r.name for r in fam.REDUCTIONS if fam.COMBINES[r.combine].indexed]  # argmax, max.dim: an index
# The interpreter runs an indexed combine (value, index) element by element, slowly: the shape,
# layout, length and dtype tests take argmax alone of them (one driver path serves all six);
# the tie and NaN tests cover each direction and each result kind.
SHAPE_NAMES = [n for n in NAMES if n not in INDEXED] + ["argmax"]

TORCH_DTYPE = {
    "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "i32": torch.int32,
    "i64": torch.int64, "bool": torch.bool, "u8": torch.uint8, "i8": torch.int8, "i16": torch.int16,
}  # fmt: skip
DTYPE_NAME = {v: k for k, v in TORCH_DTYPE.items()}
RTOL = {torch.float32: 1.3e-6, torch.float16: 1e-3, torch.bfloat16: 1.6e-2}


# -- the driver's launches, from the Python planner -------------------------------------------


def variant(combine, stage, kind, in_dtype, out_dtype, align="any"):
    """The grid's variant for a point (the driver's gen::reduce::find), or None."""
    if in_dtype not in DTYPE_NAME or out_dtype not in DTYPE_NAME:
        return None
    point = {"combine": combine, "stage": stage, "kind": kind, "in_dtype": DTYPE_NAME[in_dtype],
             "out_dtype": DTYPE_NAME[out_dtype], "align": align}
    return GRID.make(point, 90)


def geometry(x, reduced, out, keepdim, indexed=False):
    """x's dims against out: fam.Dims with out's strides and the contiguous workspace's, and for
    an indexed reduction the reduced dims' index strides (csrc/ops/reduce.cpp reduce_into)."""
    ws_strides = torch.empty(out.shape, device="meta").stride()
    dims, j = [], 0
    for d in range(x.dim()):
        dim = fam.Dim(x.shape[d], x.stride(d), reduced=reduced[d])
        if not reduced[d]:
            dim.out_stride, dim.ws_stride = out.stride(j), ws_strides[j]
        dims.append(dim)
        j += keepdim or not reduced[d]
    if indexed:
        stride = 1
        for dim in reversed(dims):
            if dim.reduced:
                dim.index_stride, stride = stride, stride * dim.size
    return dims


def kernel_args(p, split, vec, to_workspace=False, out_split=0, in_value=0, out_value=0, has_mean=0, has_value=1,
                take_sqrt=0, scale=1.0, correction=0.0):
    """The runtime arguments of a launch, by name (csrc/ops/reduce.cpp launch_prepared)."""
    out_stride = (lambda d: d.ws_stride) if to_workspace else (lambda d: d.out_stride)
    k, ro = p.kept, p.reduced_outer
    if p.inner:
        args = dict(KEPT1=k[1].size, KEPT2=k[2].size, R=p.run.size)
        args.update({f"in_k{i}": k[i].in_stride // vec for i in range(3)})
        args.update({f"out_k{i}": out_stride(k[i]) for i in range(3)})
    else:
        args = dict(B=p.run.size // vec, KEPT1=k[2].size, in_k0=k[1].in_stride // vec, in_k1=k[2].in_stride // vec,
                    out_k0=out_stride(k[1]), out_k1=out_stride(k[2]), out_b=out_stride(p.run), R=p.reduced_inner.size,
                    in_r=p.reduced_inner.in_stride // vec)
    args.update(RO=fam.outer_count(p), RO1=ro[1].size, in_ro0=ro[0].in_stride // vec, in_ro1=ro[1].in_stride // vec,
                ix_r=(p.run if p.inner else p.reduced_inner).index_stride, ix_ro0=ro[0].index_stride,
                ix_ro1=ro[1].index_stride, r_step=split.r_step, r_len=split.r_len, ro_step=split.ro_step,
                ro_len=split.ro_len, out_split=out_split, in_value=in_value, out_value=out_value, has_mean=has_mean,
                has_value=has_value, take_sqrt=take_sqrt, scale=scale, correction=correction)
    return args


def prepare(reduction, x, dims, out_dtype, stage):
    """(plan, vec, programs) of the driver's prepare(), or a fallback reason."""
    p = fam.plan(dims)
    if isinstance(p, str):
        return p
    vec = fam.vec_for(p, x.element_size(), x.data_ptr() % 16 == 0)
    if vec > 1 and variant(reduction.combine, stage, p.kind, x.dtype, out_dtype, "16") is None:
        vec = 1
    if variant(reduction.combine, stage, p.kind, x.dtype, out_dtype) is None:
        return "dtype"
    return p, vec, fam.program_count(p)


def launch(reduction, stage, p, vec, split, x, out, mean=None, in_index=None, index=None, **args):
    skip_without_interpreter_loops()
    k = fam.KINDS[p.kind]
    kernel = getattr(interpreted("kernels.reduce"), f"reduce_{k.kernel}")
    combine = reduction.combine
    source, finish = fam.STAGES[stage]
    unused = torch.empty(1, dtype=torch.int64)  # the driver's nullptr
    kernel[(fam.program_count(p), split.count)](
        x, out, out if mean is None else mean, unused if in_index is None else in_index,
        unused if index is None else index, **kernel_args(p, split, vec, has_mean=int(mean is not None), **args),
        COMBINE=combine, IDENTITY=fam.identity(combine, DTYPE_NAME[out.dtype]), SOURCE=source, FINISH=finish, VEC=vec,
        BLOCK_OUT=k.block_out, BLOCK_R=k.block_r)


def run(reduction, x, reduced, out, keepdim, log=None, mean=None, correction=1, index=None):
    """Reduces x over the dims flagged in `reduced` into `out` (and the mean into `mean`, the
    index into `index`, where the reduction has one) the way the driver does; returns a fallback
    reason or None. `out` has the value's dtype also where the reduction does not return the
    value (argmax): its launches then leave it untouched."""
    if out.numel() == 0:
        return None
    if math.prod(s for s, r in zip(x.shape, reduced) if r) == 0:
        out.fill_({"identity": fam.COMBINES[reduction.combine].float_identity, "nan": math.nan}[reduction.empty])
        if mean is not None:
            mean.fill_(math.nan)
        return None
    # ATen's mean factor: (float) outputs / inputs, in fp32.
    scale = torch.tensor(out.numel(), dtype=torch.float32) / x.numel() if reduction.scaled else 1.0
    finish = dict(scale=float(scale), correction=float(torch.tensor(float(correction), dtype=torch.float32)),
                  take_sqrt=int(reduction.sqrt), mean=mean, index=index, has_value=int("value" in reduction.results))
    whole, first_stage, second_stage = fam.stages(reduction)
    indexed = fam.COMBINES[reduction.combine].indexed
    dims = geometry(x, reduced, out, keepdim, indexed)
    prepared = prepare(reduction, x, dims, out.dtype, whole)
    if isinstance(prepared, str):
        return prepared
    p, vec, programs = prepared
    split = fam.choose_split(p, programs, True)
    if log is not None:
        log.append((p, split))
    if split.count > 1:
        ws_dtype = TORCH_DTYPE[fam.workspace(reduction, DTYPE_NAME[out.dtype])]
        values = 1 if indexed else fam.COMBINES[reduction.combine].values  # an index: a plane of its own
        planes = torch.full((values, split.count, *out.shape), 7, dtype=ws_dtype)  # poisoned
        ws = planes[0]
        ws_value = planes.stride(0) if values > 1 else 0
        ws_index = torch.full(ws.shape, -7, dtype=torch.int64) if indexed else None
        ws_dims = [fam.Dim(split.count, ws.stride(0), reduced=True)]
        ws_dims += [fam.Dim(out.shape[j], ws.stride(j + 1), out.stride(j), out.stride(j)) for j in range(out.dim())]
        first = prepare(reduction, x, dims, ws_dtype, first_stage)
        second = prepare(reduction, ws, ws_dims, out.dtype, second_stage)
        if not isinstance(first, str) and not isinstance(second, str):
            launch(reduction, first_stage, first[0], first[1], split, x, ws, to_workspace=True, out_split=ws.stride(0),
                   out_value=ws_value, index=ws_index)
            p2, vec2, programs2 = second
            split2 = fam.choose_split(p2, programs2, False)
            if log is not None:
                log.append((p2, split2))
            launch(reduction, second_stage, p2, vec2, split2, ws, out, in_value=ws_value, in_index=ws_index, **finish)
            return None
    launch(reduction, whole, p, vec, fam.choose_split(p, programs, False), x, out, **finish)
    return None


# -- torch's side ------------------------------------------------------------------------------


def dim_list(ndim, dim, name="sum"):
    """The reduced dims (wrapped): all of them for None, and for [] where the reduction says so
    (none for all / any)."""
    empty = isinstance(dim, (list, tuple)) and len(dim) == 0
    if dim is None or ndim == 0 or (empty and fam.BY_NAME[name].empty_dims_reduce_all):
        return list(range(ndim))
    return sorted({d % ndim for d in ([dim] if isinstance(dim, int) else dim)})


def expected_meta(name, x, dim, keepdim, dtype, result="value"):
    """torch's result (shape, dtype, strides) for the reduction, on the meta device: its value's,
    or its index's (int64)."""
    m = torch.empty(x.shape, dtype=x.dtype, device="meta")
    dims = dim_list(x.dim(), dim, name)
    shape = [1 if d in dims else x.shape[d] for d in range(x.dim()) if keepdim or d not in dims]
    kwargs = {"dtype": dtype} if dtype is not None else {}
    reduction = fam.BY_NAME[name]
    if result == "index":
        result_dtype = torch.int64
    elif reduction.result in ("same", "real", "input", "arg", "unary"):
        result_dtype = x.dtype
    else:
        result_dtype = getattr(torch, reduction.op)(m, **kwargs).dtype
    return torch.empty(shape, dtype=result_dtype, device="meta")


def gems_reduce(name, x, dim=None, keepdim=False, dtype=None, log=None, correction=None, value=None):
    """The reduction through the driver's launches on the interpreted kernels: its result, or its
    results as a tuple (var_mean: (result, mean); max.dim: (values, indices); argmax: the index).
    `value`: the (poisoned) value tensor of a reduction that does not return it."""
    reduction = fam.BY_NAME[name]
    meta = expected_meta(name, x, dim, keepdim, dtype)
    poisoned = lambda dt: torch.full(meta.shape, 123, dtype=dt)  # noqa: E731
    out = poisoned(meta.dtype) if value is None else value
    mean = poisoned(meta.dtype) if reduction.with_mean else None
    index = poisoned(torch.int64) if "index" in reduction.results else None
    reduced = [d in dim_list(x.dim(), dim, name) for d in range(x.dim())]
    reason = run(reduction, x, reduced, out, keepdim, log=log, mean=mean,
                 correction=1 if correction is None else correction, index=index)
    assert reason is None, reason
    results = tuple({"value": out, "mean": mean, "index": index}[r] for r in reduction.results)
    return results if len(results) > 1 else results[0]


def reference(name, x, dim=None, keepdim=False, correction=None):
    """The reduction in float64 (int64 for integers), with the reduced dims moved last (and
    flattened: an index is torch's index into the flattened reduced dims)."""
    reduction = fam.BY_NAME[name]
    wide = x.double() if x.is_floating_point() else x.long()
    dims = dim_list(x.dim(), dim, name)
    kept = [d for d in range(x.dim()) if d not in dims]
    flat = wide.permute(kept + dims).reshape([x.shape[d] for d in kept] + [math.prod(x.shape[d] for d in dims)])
    kwargs = {"correction": correction} if correction is not None else {}
    result = getattr(torch, reduction.op)(flat, -1, **kwargs)
    if reduction.result == "unary":  # max() of every element: torch.max(x, dim)'s values
        result = result.values
    elif isinstance(result, tuple):
        result = tuple(result)
    if keepdim:
        shape = [1 if d in dims else x.shape[d] for d in range(x.dim())]
        result = tuple(r.reshape(shape) for r in result) if isinstance(result, tuple) else result.reshape(shape)
    return result


def check(res, name, x, dim=None, keepdim=False, dtype=None, correction=None):
    results = fam.BY_NAME[name].results
    ref = reference(name, x, dim, keepdim, correction)
    if len(results) == 1:
        res, ref = (res,), (ref,)
    assert len(res) == len(ref) == len(results)
    for r, f, result in zip(res, ref, results):
        check_values(r, f, name, x, dim, keepdim, dtype, result)


def check_values(res, ref, name, x, dim, keepdim, dtype, result="value"):
    meta = expected_meta(name, x, dim, keepdim, dtype, result)
    assert (res.dtype, res.shape, res.stride()) == (meta.dtype, meta.shape, meta.stride())
    n = max(math.prod(x.shape[d] for d in dim_list(x.dim(), dim, name)), 1)
    if name in EXACT or not res.dtype.is_floating_point:
        torch.testing.assert_close(res, ref.to(res.dtype), rtol=0, atol=0, equal_nan=True)
    elif name == "prod":  # an fp32 rounding per factor, then the output's
        torch.testing.assert_close(res, ref.to(res.dtype), rtol=RTOL[res.dtype] + 2e-7 * n, atol=1e-6)
    else:
        atol = 1e-4 * (n if name == "sum" else 1)
        torch.testing.assert_close(res, ref.to(res.dtype), rtol=RTOL[res.dtype], atol=atol, equal_nan=True)


def make_input(name, shape, dtype, gen):
    if name in ("all", "any"):  # zeros at every 7th element of the first half (all), else nonzeros
        n = math.prod(shape)
        values = make_input("sum", shape, dtype, gen)
        values = torch.where(values == 0, torch.ones((), dtype=dtype), values)
        sparse = (torch.arange(n) % 7 == 3) & (torch.arange(n) < n // 2)
        sparse = sparse.reshape(shape)
        zero = torch.zeros((), dtype=dtype)
        return torch.where(sparse, zero, values) if name == "all" else torch.where(sparse, values, zero)
    if dtype == torch.bool:
        return torch.rand(shape, generator=gen) < 0.5
    if name == "prod":  # factors near +-1 keep long products finite (and integer ones nonzero mod 2**64)
        if not dtype.is_floating_point:
            return torch.tensor([-1, 1, 1, 1, 3], dtype=dtype)[torch.randint(0, 5, shape, generator=gen)]
        sign = torch.where(torch.rand(shape, generator=gen) < 0.5, -1.0, 1.0)
        return (sign * (0.9 + 0.2 * torch.rand(shape, generator=gen))).to(dtype)
    if not dtype.is_floating_point:
        return torch.randint(0 if dtype == torch.uint8 else -100, 100, shape, generator=gen, dtype=dtype)
    return torch.randn(shape, generator=gen).to(dtype)


def dtypes_of(name):
    return [TORCH_DTYPE[d] for d in fam.BY_NAME[name].dtypes]


# -- kernel math, every reduction, interpreted ----------------------------------------------------

# (shape, dim, kind of the first launch)
KIND_CASES = [
    ((5, 37), 1, "inner_r32"),
    ((3, 300), -1, "inner_r128"),
    ((2, 700), 1, "inner_r512"),
    ((2, 4100), 1, "inner_r2k"),
    ((600, 3), 0, "outer_b4"),
    ((70, 13), 0, "outer_b16"),
    ((9, 40), 0, "outer_b64"),
    ((4, 300), 0, "outer_b128"),
]


@pytest.mark.parametrize("name", SHAPE_NAMES)
@pytest.mark.parametrize("shape,dim,kind", KIND_CASES)
def test_kernel_kinds(name, shape, dim, kind, seeded):
    x = make_input(name, shape, torch.float32, seeded)
    log = []
    check(gems_reduce(name, x, dim, log=log), name, x, dim)
    assert log[0][0].kind == kind


@pytest.mark.parametrize("name", SHAPE_NAMES)
def test_dtypes(name, seeded):
    for dtype in dtypes_of(name):
        for shape, dim in (((13, 70), 1), ((33, 9), 0), ((300,), None)):
            x = make_input(name, shape, dtype, seeded)
            check(gems_reduce(name, x, dim), name, x, dim)


@pytest.mark.parametrize("name", SHAPE_NAMES)
def test_lengths_around_a_block(name, seeded):
    """Reduced lengths of 1, one block, one past it and several, in both kernels (BLOCK_R 32
    and 2048 for inner runs; 512 steps of the outer kernel)."""
    for length in (1, 2, 31, 32, 33, 2047, 2048, 2049, 4500):
        x = make_input(name, (3, length), torch.float32, seeded)
        check(gems_reduce(name, x, 1), name, x, 1)
    for length in (1, 511, 512, 513, 1100):
        x = make_input(name, (length, 3), torch.float32, seeded)
        check(gems_reduce(name, x, 0), name, x, 0)


@pytest.mark.parametrize("name", SHAPE_NAMES)
@pytest.mark.parametrize(
    "shape,dim,keepdim",
    [
        ((), None, False),
        ((), 0, True),
        ((1,), None, False),
        ((7,), 0, True),
        ((20, 32, 15), 1, False),
        ((20, 32, 15), (0, 2), True),
        ((20, 32, 15), (-1, -3), False),
        ((6, 7, 5, 4, 3), (0, 2, 4), False),  # three reduced groups, inner kernel
        ((6, 7, 5, 4, 3), (1, 3), True),  # two reduced groups, outer kernel
        ((6, 7, 5, 4, 3), (0, 2), False),
        ((6, 7, 5, 4, 3), [], False),
        ((6, 7, 5, 4, 3), None, True),
    ],
)
def test_dim_lists(name, shape, dim, keepdim, seeded):
    x = make_input(name, shape, torch.float32, seeded)
    check(gems_reduce(name, x, dim, keepdim), name, x, dim, keepdim)


@pytest.mark.parametrize("name", SHAPE_NAMES)
def test_layouts(name, seeded):
    base = make_input(name, (12, 20, 10), torch.float32, seeded)
    row = make_input(name, (20,), torch.float32, seeded)
    cases = [
        (base.transpose(0, 2), (0,)),  # reduced dim contiguous: inner kernel
        (base.transpose(0, 2), (1, 2)),  # kept dim contiguous: outer kernel
        (base.permute(1, 2, 0), (1,)),
        (base[2:9, 3:17, 1:], (1,)),  # storage offset, uncoalescable strides
        (base[2:9, 3:17, 1:], (0, 2)),
        (base[:, 3:4, :], (0,)),  # size-1 dims dropped
        (row.expand(6, 20), (0,)),  # stride-0 reduced dim
        (row.expand(6, 20), (1,)),
        (row[:6, None].expand(6, 20), (0, 1)),
        (row[0].expand(5, 6), (0,)),  # every dim broadcast
        (row[0].expand(5, 6), (0, 1)),
        (make_input(name, (4, 6, 5, 3), torch.float32, seeded).to(memory_format=torch.channels_last), (2, 3)),
    ]
    for i, (x, dim) in enumerate(cases):
        keepdim = i % 2 == 1  # keepdim changes the output strides only: every other case
        check(gems_reduce(name, x, dim, keepdim), name, x, dim, keepdim)


@pytest.mark.parametrize("name", ["amax", "amin"])
def test_nan_and_infinities(name):
    x = torch.tensor([[1.0, float("nan"), -3.0], [float("inf"), 2.0, float("-inf")], [5.0, 6.0, float("nan")]])
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for dim in (0, 1, None):
            res = gems_reduce(name, x.to(dtype), dim)
            torch.testing.assert_close(res, getattr(torch, name)(x.to(dtype), dim if dim is not None else ()),
                                       rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("name", ["amax", "amin"])
def test_integer_extremes(name):
    for dtype in (torch.int32, torch.int64):
        info = torch.iinfo(dtype)
        x = torch.tensor([[info.min, 0, info.max], [info.max, info.min, -1], [info.min, info.min, info.min]],
                         dtype=dtype)
        for dim in (0, 1, None):
            assert torch.equal(gems_reduce(name, x, dim), getattr(torch, name)(x, dim if dim is not None else ()))


def spread_extremes(x, dims, value, count=4):
    """x with `value` at `count` places spread along the flattened reduced dims of every output
    (so a long reduction has it in several splits, lanes and chunks)."""
    x = x.clone()
    kept = [d for d in range(x.dim()) if d not in dims]
    view = x.permute(kept + dims).reshape(-1, math.prod(x.shape[d] for d in dims))  # a copy where not a view
    n = view.shape[1]
    for k in range(count):
        view[:, (k * n) // count + k] = value
    inverse = [0] * x.dim()
    for i, d in enumerate(kept + dims):
        inverse[d] = i
    return view.reshape([x.shape[d] for d in kept + dims]).permute(inverse).contiguous()


# (shape, dims): both kernels, a full and a multi-dim reduction; long enough to split below.
TIE_CASES = [((3, 20000), [1]), ((5000, 3), [0]), ((20000,), [0]), ((40, 30, 20), [0, 2])]


@pytest.mark.parametrize("name", ["argmax", "min.dim"])  # each direction, each result kind
@pytest.mark.parametrize("shape,dims", TIE_CASES)
def test_first_extreme_on_ties(name, shape, dims, seeded, monkeypatch):
    """The index of the FIRST extreme, as ATen's: the extreme at four places of every reduction,
    so the tie is met within a lane, between lanes (tl.reduce's tree) and between a split's
    partials; integer extremes equal to the accumulator's identity."""
    monkeypatch.setattr(fam, "TARGET_PROGRAMS", 16)  # splits at interpreter sizes
    low = fam.BY_NAME[name].combine == "argmin"
    for dtype in (torch.float32, torch.bfloat16, torch.int32, torch.int64):
        x = make_input("sum", shape, dtype, seeded)
        extreme = (-1000 if low else 1000) if dtype != torch.int64 else (-(2**63) if low else 2**63 - 1)
        x = spread_extremes(x, dims, extreme)
        log = []
        res = gems_reduce(name, x, dims if len(dims) > 1 else dims[0], log=log)
        assert log[0][1].count > 1  # split
        check(res, name, x, dims if len(dims) > 1 else dims[0])
    everywhere = torch.full(shape, -(2**63) if not low else 2**63 - 1, dtype=torch.int64)  # all tie at the identity
    check(gems_reduce(name, everywhere, dims[0]), name, everywhere, dims[0])


@pytest.mark.parametrize("name", INDEXED)
def test_nan_is_the_extreme(name, monkeypatch):
    """A NaN is beyond every number for argmax and argmin alike (the first NaN's index), also
    beside infinities and in a later split than the largest number; a row of one infinity is its
    first element."""
    monkeypatch.setattr(fam, "TARGET_PROGRAMS", 16)
    f, inf = float("nan"), float("inf")
    small = torch.tensor([[1.0, f, -3.0, f], [inf, 2.0, -inf, 0.0], [5.0, 6.0, 7.0, f], [-inf, -inf, -inf, -inf],
                          [inf, inf, inf, inf], [f, f, f, f]])
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for dim in (0, 1, None):
            check(gems_reduce(name, small.to(dtype), dim), name, small.to(dtype), dim)
    x = torch.linspace(-1, 1, 20000).repeat(3, 1)
    x[1] = x[1].flip(0)  # row 0: the largest number last, row 1: first (a split before the NaN's)
    x[:, 15000] = f
    x[1, 17000] = f
    x[2, 100] = inf
    x[2, 200] = -inf
    log = []
    res = gems_reduce(name, x, 1, log=log)
    assert log[0][1].count > 1
    check(res, name, x, 1)
    index = res if name in ("argmax", "argmin") else res[1]
    assert index.tolist() == [15000, 15000, 15000]


def test_argmax_writes_no_value(seeded):
    """argmax returns the index alone: its launches leave the value tensor as they found it (a
    split's partials are values too, in the workspace)."""
    x = make_input("sum", (3, 4100), torch.float32, seeded)
    for monkeypatched in (False, True):
        value = torch.full((3,), 123.0)
        with pytest.MonkeyPatch.context() as m:
            if monkeypatched:
                m.setattr(fam, "TARGET_PROGRAMS", 16)
            index = gems_reduce("argmax", x, 1, value=value)
        assert torch.equal(index, torch.argmax(x, 1)) and torch.equal(value, torch.full((3,), 123.0))


def test_index_is_torchs_flattened_index(seeded):
    """Every dim of a permuted, sliced or expanded tensor: the index into it as torch flattens it,
    whatever the memory order the kernels walk (reduced dims coalesce only in torch's order)."""
    base = make_input("sum", (12, 20, 10), torch.float32, seeded)
    for x in (base.transpose(0, 2), base.permute(1, 2, 0)[2:, :, 3:9], base[:, :1].expand(12, 7, 10), base[:, 3]):
        assert torch.equal(gems_reduce("argmax", x), torch.argmax(x))
        assert torch.equal(gems_reduce("argmin", x, None, True), torch.argmin(x, None, True))
    t = torch.empty(12, 20, 10).transpose(0, 2)  # shape (10, 20, 12), strides (1, 10, 200)
    everything = [True] * 3
    plain = fam.plan(geometry(t, everything, torch.empty(()), False))
    assert plain.run.size == 2400 and fam.outer_count(plain) == 1  # one run in memory order
    indexed = fam.plan(geometry(t, everything, torch.empty(()), False, indexed=True))
    assert (indexed.run.size, indexed.run.index_stride) == (10, 240)
    assert [(d.size, d.index_stride) for d in indexed.reduced_outer] == [(12, 1), (20, 12)]
    contiguous = fam.plan(geometry(torch.empty(10, 20, 12), everything, torch.empty(()), False, indexed=True))
    assert (contiguous.run.size, contiguous.run.index_stride) == (2400, 1)


@pytest.mark.parametrize("name", ["all", "any"])
def test_all_any_values(name):
    """Nonzero is what counts: NaN and infinities are, -0.0 is not; integer extremes; uint8 input
    gives uint8; dim=[] reduces nothing (each element's truth); an empty reduction is True / False."""
    f = float("nan")
    x = torch.tensor([[1.0, f, -0.0], [0.0, 0.0, -0.0], [float("-inf"), 2.0, 3.0], [0.0, f, 0.0]])
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for dim in (0, 1, None, [], [0, 1]):
            res = gems_reduce(name, x.to(dtype), dim)
            expected = getattr(torch, name)(x.to(dtype)) if dim is None else getattr(torch, name)(x.to(dtype), dim)
            assert res.dtype == torch.bool and torch.equal(res, expected), (dtype, dim)
    for dtype in (torch.int32, torch.int64, torch.int8, torch.int16, torch.uint8):
        info = torch.iinfo(dtype)
        i = torch.tensor([[info.min, 0, info.max], [0, 0, 0], [info.max, info.min, 1]], dtype=dtype)
        for dim in (0, 1, None):
            res = gems_reduce(name, i, dim)
            expected = getattr(torch, name)(i) if dim is None else getattr(torch, name)(i, dim)
            assert res.dtype == expected.dtype == (torch.uint8 if dtype == torch.uint8 else torch.bool)
            assert torch.equal(res, expected), (dtype, dim)
    for x, dim in ((torch.empty(0, 7), 0), (torch.empty(0, 7), None), (torch.empty(0), None), (torch.empty(0, 7), [])):
        res = gems_reduce(name, x, dim)
        assert torch.equal(res, getattr(torch, name)(x, dim=dim)), (x.shape, dim)
    empty = gems_reduce(name, torch.empty(0, dtype=torch.uint8))
    assert empty.dtype == torch.uint8 and empty.item() == (name == "all")


VARIANCES = [r.name for r in fam.REDUCTIONS if r.finish == "var"]


@pytest.mark.parametrize("name", VARIANCES)
def test_variance_corrections(name, seeded):
    """Any correction as torch: 0, 1, fractional, negative, the reduced length and past it (inf, or
    NaN where every element is equal), one element (NaN for correction 1); every float dtype."""
    x = make_input(name, (6, 40), torch.float32, seeded)
    x[5] = 3.0  # a constant row: m2 = 0
    for correction in (0, 1, 2.5, -1, 40, 41, 100):
        for dim in (1, 0, None):
            check(gems_reduce(name, x, dim, correction=correction), name, x, dim, correction=correction)
    for dtype in (torch.float16, torch.bfloat16):
        check(gems_reduce(name, x.to(dtype), 1, correction=0), name, x.to(dtype), 1, correction=0)
    one = torch.tensor([2.0])
    res, ref = gems_reduce(name, one), getattr(torch, name)(one)
    torch.testing.assert_close(res, ref, rtol=0, atol=0, equal_nan=True)  # NaN (and the mean 2)


@pytest.mark.parametrize("name", ["var", "std_mean"])
def test_variance_is_sound(name, seeded):
    """Welford in fp32: a mean of 1e3 beside a spread of 1 keeps its variance to 1e-4, where an fp32
    sum of squares (1e6 per element, 3e9 summed) would cancel to noise; also in a split's states."""
    x = 1e3 + torch.randn(5, 3000, generator=seeded)
    for dim in (1, None):
        res = gems_reduce(name, x, dim)
        ref = reference(name, x, dim)
        var, expected = (res[0], ref[0]) if isinstance(res, tuple) else (res, ref)
        torch.testing.assert_close(var.double(), expected, rtol=1e-4, atol=0)


@pytest.mark.parametrize("name", VARIANCES)
def test_variance_nan_inf_and_empty(name):
    f = float("nan")
    x = torch.tensor([[1.0, f, 2.0], [float("inf"), 1.0, 2.0], [1.0, 2.0, 4.0]])
    for dim in (0, 1, None):
        res, ref = gems_reduce(name, x, dim), getattr(torch, name)(x) if dim is None else getattr(torch, name)(x, dim)
        for a, b in zip(res, ref) if isinstance(res, tuple) else ((res, ref),):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=0, equal_nan=True)
    for x, dim in ((torch.empty(0, 7), 0), (torch.empty(0), None), (torch.empty(0, 7), 1)):
        check(gems_reduce(name, x, dim), name, x, dim)


def test_bool_inputs(seeded):
    x = make_input("amax", (9, 40), torch.bool, seeded)
    x[0] = False
    x[1] = True
    for name in ("amax", "amin"):
        for dim in (0, 1):
            res = gems_reduce(name, x, dim)
            assert res.dtype == torch.bool and torch.equal(res, getattr(torch, name)(x, dim))
    for name in ("sum", "prod"):
        res = gems_reduce(name, make_input(name, (13, 9), torch.int32, seeded), 1)
        assert res.dtype == torch.int64


@pytest.mark.parametrize("name", ["sum", "mean", "prod"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_to_fp32(name, dtype, seeded):
    x = make_input(name, (33, 18), dtype, seeded)
    for dim in (0, 1):
        res = gems_reduce(name, x, dim, dtype=torch.float32)
        check(res, name, x, dim, dtype=torch.float32)


def test_int64_wraps_like_torch():
    x = torch.tensor([2**62, 2**62, 2**62, 5], dtype=torch.int64)
    assert torch.equal(gems_reduce("sum", x), torch.sum(x))
    y = torch.tensor([2**40, 2**40, 3], dtype=torch.int64)
    assert torch.equal(gems_reduce("prod", y), torch.prod(y))


def test_mean_scale_is_atens():
    """mean multiplies the sum by (float) outputs / inputs, as ATen's CUDA kernel does, rather than
    divide: the mean of 41 ones is 41 * fl(1 / 41) = 0.99999994 in fp32, as on ATen's CUDA path."""
    res = gems_reduce("mean", torch.ones(3, 41), 1)
    assert torch.equal(res, torch.full((3,), 0.99999994))


def test_step_slices_fall_back(seeded):
    x = make_input("sum", (8, 10), torch.float32, seeded)[:, ::2]
    assert run(fam.BY_NAME["amax"], x, [False, True], torch.empty(8), False) == "layout"


def test_too_many_groups_fall_back():
    x = torch.randn(2, 3, 2, 3, 2, 3, 2)
    reduced = [d in (0, 2, 4, 6) for d in range(7)]  # four reduced groups
    assert run(fam.BY_NAME["sum"], x, reduced, torch.empty(3, 3, 3), False) == "rank"


def test_uncovered_dtypes_fall_back():
    x = torch.randn(4, 5).double()
    assert run(fam.BY_NAME["sum"], x, [False, True], torch.empty(4, dtype=torch.float64), False) == "dtype"
    i = torch.ones(4, 5, dtype=torch.int8)
    assert run(fam.BY_NAME["amax"], i, [False, True], torch.empty(4, dtype=torch.int8), False) == "dtype"


@pytest.mark.parametrize("name", NAMES)
def test_empty_outputs(name):
    x = torch.empty(0, 7)
    check(gems_reduce(name, x, 1), name, x, 1)


@pytest.mark.parametrize("name", ["sum", "mean", "prod"])
def test_empty_reductions(name):
    for x, dim in ((torch.empty(0, 7), 0), (torch.empty(0, 7), None), (torch.empty(0), None)):
        check(gems_reduce(name, x, dim), name, x, dim)


def test_out_strides(seeded):
    x = make_input("amax", (3, 6, 8), torch.float32, seeded)
    out = torch.full((6, 3), float("nan")).t()  # the right size, transposed: torch keeps strides
    assert run(fam.BY_NAME["amax"], x, [False, False, True], out, False) is None
    torch.testing.assert_close(out, x.amax(2), rtol=0, atol=0)


@pytest.mark.parametrize(
    "name,shape,dim,dtype",
    [
        ("sum", (20000,), None, torch.float32),  # split over the contiguous run, fp32 partials
        ("sum", (3, 20000), 1, torch.bfloat16),  # bf16 output from fp32 partials
        ("sum", (9000, 3), 0, torch.int32),  # outer kernel split, int64 partials
        ("sum", (40, 60, 9), (0, 2), torch.float16),  # inner run of 9, split over the outer reduced dim
        ("mean", (3, 20000), 1, torch.bfloat16),  # the scale on the second pass only
        ("mean", (9000, 3), 0, torch.float32),
        ("prod", (9000, 3), 0, torch.float16),
        ("prod", (20000,), None, torch.int64),
        ("amax", (20000,), None, torch.float16),  # partials in the output dtype
        ("amin", (9000, 3), 0, torch.int32),
        ("amax", (40, 60, 9), (0, 2), torch.bool),
        ("all", (20000,), None, torch.float16),  # bool partials
        ("any", (9000, 3), 0, torch.uint8),  # uint8 partials
        ("all", (40, 60, 9), (0, 2), torch.int8),
        ("var", (20000,), None, torch.float32),  # whole Welford states as partials
        ("std", (3, 20000), 1, torch.bfloat16),
        ("var_mean", (9000, 3), 0, torch.float16),  # outer kernel split, the mean beside
        ("std_mean", (40, 60, 9), (0, 2), torch.float32),
        ("argmax", (20000,), None, torch.bfloat16),  # value and index partials, the value output-typed
        ("max.dim", (3, 20000), 1, torch.float16),
        ("min.dim", (9000, 3), 0, torch.int32),  # outer kernel split
        ("argmin", (40, 60, 9), (0, 2), torch.float32),  # split over the outer reduced dim
        ("max.dim", (9000, 3), 0, torch.bool),
    ],
)
def test_split_reduction(name, shape, dim, dtype, seeded, monkeypatch):
    # A small target keeps the interpreted grids small while still splitting.
    monkeypatch.setattr(fam, "TARGET_PROGRAMS", 16)
    x = make_input(name, shape, dtype, seeded)
    log = []
    res = gems_reduce(name, x, dim, log=log)
    assert log[0][1].count > 1 and len(log) == 2 and log[1][1].count == 1
    check(res, name, x, dim)


def test_deterministic(seeded):
    x = make_input("sum", (5000,), torch.float32, seeded)
    assert torch.equal(gems_reduce("sum", x), gems_reduce("sum", x))
    assert torch.equal(gems_reduce("mean", x), gems_reduce("mean", x))


# -- the planner ----------------------------------------------------------------------------------


def test_split_counts():
    # The planner's choices for a 64M-element full reduction and tall column reductions (fp32: VEC 4).
    p = fam.plan([fam.Dim(1 << 26, 1, reduced=True)])
    split = fam.choose_split(p, fam.program_count(p), True)
    assert p.kind == "inner_r2k" and fam.vec_for(p, 4, True) == 4
    assert split.count == fam.TARGET_PROGRAMS and split.r_step % 2048 == 0
    p = fam.plan([fam.Dim(1 << 20, 4, 0, 0, True), fam.Dim(4, 1, 1, 1)])
    split = fam.choose_split(p, fam.program_count(p), True)
    assert p.kind == "outer_b4" and split.count == 512 and fam.vec_for(p, 4, True) == 4  # 4 steps a split
    assert p.reduced_inner.in_stride == 4 and p.run.size == 4
    p = fam.plan([fam.Dim(1 << 20, 6, 0, 0, True), fam.Dim(6, 1, 1, 1)])
    assert fam.vec_for(p, 4, True) == 1 and fam.vec_for(p, 2, True) == 1 and fam.vec_for(p, 4, False) == 1


def planner_cases():
    """Dim lists over which the C++ and Python planners are compared: every layout of the
    kernel-math tests with each dim subset, and lengths around every kind's threshold and the
    split's, which need no tensor."""
    tensors = [torch.empty(12, 20, 10), torch.empty(12, 20, 10).transpose(0, 2), torch.empty(12, 20, 10)[2:9, 3:17, 1:],
               torch.empty(20).expand(6, 20), torch.empty(()).expand(5, 6), torch.empty(8, 10)[:, ::2],
               torch.empty(4, 6, 5, 3).to(memory_format=torch.channels_last), torch.empty(6, 7, 5, 4, 3),
               torch.empty(2, 3, 2, 3, 2, 3, 2), torch.empty(1, 7, 1)]
    cases = []
    for x in tensors:
        for k in range(1, x.dim() + 1):
            for dims in itertools.combinations(range(x.dim()), k):
                for keepdim in (False, True):
                    out = torch.empty(torch.sum(x, dims, keepdim).shape, device="meta")
                    out_t = out.t() if out.dim() == 2 else out  # a transposed out= too
                    for o in (out, out_t):
                        for indexed in (False, True):  # index strides: reduced dims coalesce only in torch's order
                            cases.append(geometry(x, [d in dims for d in range(x.dim())], o, keepdim, indexed))
    lengths = sorted({v + d for k in fam.KINDS.values() if k.max_run for v in (k.max_run, k.block_r)
                      for d in (-1, 0, 1)} | {1, 3000, 1 << 16, 1 << 20, 1 << 26, (1 << 31) + 5})
    for n in lengths:
        cases.append([fam.Dim(n, 1, reduced=True)])
        for m in (1, 3, 8, 100, 5000):
            cases.append([fam.Dim(m, n, 1, 1), fam.Dim(n, 1, reduced=True)])  # rows of n
            cases.append([fam.Dim(m, n, 0, 0, True), fam.Dim(n, 1, 1, 1)])  # columns of m, kept run n
    return cases


def describe(p, split_allowed=True):
    """One line per plan, printed alike by both planners."""
    if isinstance(p, str):
        return p
    dim = lambda d: f"{d.size},{d.in_stride},{d.out_stride},{d.ws_stride},{d.index_stride}"  # noqa: E731
    programs = fam.program_count(p)
    s = fam.choose_split(p, programs, split_allowed)
    return " ".join([str(int(p.inner)), str(list(fam.KINDS).index(p.kind)), *map(dim, p.kept),
                     *map(dim, p.reduced_outer), dim(p.run), dim(p.reduced_inner),
                     *(str(fam.vec_for(p, e, a)) for e, a in ((4, True), (2, True), (4, False))), str(programs),
                     f"{s.count},{s.r_step},{s.r_len},{s.ro_step},{s.ro_len}"])


CPP_MAIN = r"""
#include <cstdio>
#include <vector>
#include "reduce_plan.h"
using namespace gems::reduce_plan;
static void print_dim(const Dim& d) {
  std::printf(" %lld,%lld,%lld,%lld,%lld", (long long)d.size, (long long)d.in_stride, (long long)d.out_stride,
              (long long)d.ws_stride, (long long)d.index_stride);
}
int main() {
  const std::vector<std::vector<Dim>> cases = {
CASES
  };
  for (const auto& dims : cases) {
    Plan p;
    const Planned status = plan(dims.data(), static_cast<int>(dims.size()), p);
    if (status != Planned::kOk) { std::printf(status == Planned::kLayout ? "layout\n" : "rank\n"); continue; }
    std::printf("%d %d", p.inner ? 1 : 0, p.kind);
    for (const Dim& d : p.kept) print_dim(d);
    for (const Dim& d : p.reduced_outer) print_dim(d);
    print_dim(p.run);
    print_dim(p.reduced_inner);
    const long long programs = program_count(p);
    const Split s = choose_split(p, programs, true);
    std::printf(" %lld %lld %lld %lld %lld,%lld,%lld,%lld,%lld\n", (long long)vec_for(p, 4, true),
                (long long)vec_for(p, 2, true), (long long)vec_for(p, 4, false), programs, (long long)s.count,
                (long long)s.r_step, (long long)s.r_len, (long long)s.ro_step, (long long)s.ro_len);
  }
}
"""


def test_cpp_planner_is_the_python_one(tmp_path):
    """csrc/ops/reduce_plan.h with the generated reduce_tables.h, compiled, plans every case as
    aot/family_reduce.py does: groups, kind, VEC, programs and split."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    (tmp_path / fam.TABLES_HEADER).write_text(fam.generated_sources()[fam.TABLES_HEADER])
    cases = planner_cases()
    literal = ",\n".join("    {" + ", ".join(f"{{{d.size}, {d.in_stride}, {d.out_stride}, {d.ws_stride}, "
                                               f"{str(d.reduced).lower()}, {d.index_stride}}}" for d in dims) + "}"
                          for dims in cases)
    (tmp_path / "main.cpp").write_text(CPP_MAIN.replace("CASES", literal))
    subprocess.run([cxx, "-std=c++20", "-O1", "-I", str(tmp_path), "-I", str(ROOT / "csrc" / "ops"), "-o",
                    str(tmp_path / "plan"), str(tmp_path / "main.cpp")], check=True)
    got = subprocess.run([str(tmp_path / "plan")], check=True, capture_output=True, text=True).stdout.splitlines()
    expected = [describe(fam.plan(dims)) for dims in cases]
    assert len(cases) > 500 and {"layout", "rank"} <= set(expected)
    assert {line.split()[1] for line in expected if line[0] in "01"} == {str(i) for i in range(len(fam.KINDS))}
    assert any(line.split()[-1].split(",")[0] != "1" for line in expected if line[0] in "01")  # splits
    assert got == expected


def test_generated_tables_are_the_declarations():
    text = fam.generated_sources()[fam.TABLES_HEADER]
    body = text[text.index("kCovers"):]
    flags = [v.strip(" {}\n;") == "true" for v in body[body.index("= {") + 3:body.index("};")].split(",")]
    assert flags == [fam.covers(r, i, o) for r in fam.REDUCTIONS for i in fam.DTYPES for o in fam.DTYPES]
    assert ("enum Reduction : int { kSum = 0, kMean = 1, kProd = 2, kAmax = 3, kAmin = 4, kAll = 5, kAny = 6, "
            "kVar = 7, kStd = 8, kVarMean = 9, kStdMean = 10, kMax = 11, kMin = 12, kMaxDim = 13, kMinDim = 14, "
            "kArgmax = 15, kArgmin = 16 };") in text
    nan = "std::numeric_limits<double>::quiet_NaN()"
    assert (f"kEmptyValue[kNumReductions] = {{0.0, {nan}, 1.0, 0.0, 0.0, 1.0, 0.0, {nan}, {nan}, {nan}, {nan}, 0.0, "
            "0.0, 0.0, 0.0, 0.0, 0.0};") in text
    assert ("kEmpty[kNumReductions] = {kIdentity, kNan, kIdentity, kRaise, kRaise, kIdentity, kIdentity, kNan, kNan, "
            "kNan, kNan, kRaise, kRaise, kRaiseArg, kRaiseArg, kRaiseArg, kRaiseArg};") in text
    assert text.index("enum EmptyRule") < text.index("kEmpty[kNumReductions]")
    assert "kEmptyDimsReduceAll[kNumReductions] = {true, true, true, true, true, false, false, true, true, true, " in text
    assert ("kResult[kNumReductions] = {kPromote, kFloating, kPromote, kSame, kSame, kBool, kBool, kReal, kReal, kReal, "
            "kReal, kUnary, kUnary, kInput, kInput, kArg, kArg};") in text
    assert "kValues[kNumReductions] = {1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 1, 1, 2, 2, 2, 2};" in text
    assert "kStageSecond[kNumReductions] = {0, 0, 0, 0, 0, 0, 0, 3, 3, 3, 3, 0, 0, 5, 5, 5, 5};" in text
    assert "kStageFirst[kNumReductions] = {0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 4, 4, 4, 4};" in text
    flags = lambda name: [r.name in name for r in fam.REDUCTIONS]  # noqa: E731
    cpp = lambda values: "{" + ", ".join("true" if v else "false" for v in values) + "};"  # noqa: E731
    assert "kWithMean[kNumReductions] = " + cpp(flags({"var_mean", "std_mean"})) in text
    assert "kWithIndex[kNumReductions] = " + cpp(flags(set(INDEXED))) in text
    assert "kIndexed[kNumReductions] = " + cpp(flags(set(INDEXED))) in text
    assert "kWithValue[kNumReductions] = " + cpp(flags(set(NAMES) - {"argmax", "argmin"})) in text
    assert ('kName[kNumReductions] = {"sum", "mean", "prod", "amax", "amin", "all", "any", "var", "std", "var_mean", '
            '"std_mean", "max", "min", "max", "min", "argmax", "argmin"};') in text
    assert 'kErrorName[kNumReductions] = {"sum", "mean", "prod", "amax", "amin", "all", "any", "std and var", ' in text
    assert "kKindMaxRun[kNumKinds] = {64, 512, 2048, -1, 4, 16, 64, -1};" in text


# -- declarations --------------------------------------------------------------------------------


def test_variant_count():
    per_arch = {a: sum(GRID.make(p, a) is not None for p in GRID.points()) for a in ARCHS}
    assert per_arch == {80: 968, 90: 968, 100: 968}


def test_declarations_match_kernels():
    for point in GRID.points():
        v = GRID.make(point, 90)
        if v is None:
            continue
        sig = dict(v.signature)  # its names against the kernel: test_aot.py, for every family
        out_type = DTYPES[point["out_dtype"]][0]
        assert sig["in_ptr"] == DTYPES[point["in_dtype"]][0] and sig["out_ptr"] == sig["mean_ptr"] == out_type
        assert sig["in_index_ptr"] == sig["index_ptr"] == "*i64" and sig["scale"] == sig["correction"] == "fp32"
        floats = ("in_ptr", "out_ptr", "mean_ptr", "in_index_ptr", "index_ptr", "scale", "correction")
        assert all(t == "i64" for n, t in v.signature if n not in floats and t != "constexpr")
        k = fam.KINDS[point["kind"]]
        combine = fam.COMBINES[point["combine"]]
        assert v.kernel == f"kernels.reduce:reduce_{k.kernel}" and v.num_warps == k.num_warps * combine.values_warps
        vec = 16 // fam.ELEMENT_BYTES[point["in_dtype"]] if point["align"] == "16" else 1
        source, finish = fam.STAGES[point["stage"]]
        assert (combine.values == 1) == (point["stage"] == "value")
        assert dict(v.constexprs) == {"COMBINE": point["combine"], "VEC": vec, "BLOCK_OUT": k.block_out,
                                      "BLOCK_R": k.block_r, "SOURCE": source, "FINISH": finish,
                                      "IDENTITY": fam.identity(point["combine"], point["out_dtype"])}
        assert set(v.divisible16) == ({"in_ptr", "r_step"} if vec > 1 else {"r_step"})


def test_coverage():
    def built(combine, i, o, align="any", stage="value"):
        return all(GRID.make({"combine": combine, "stage": stage, "kind": kind, "in_dtype": i, "out_dtype": o,
                              "align": align}, 90) is not None for kind in fam.KINDS)

    for r in fam.REDUCTIONS:
        whole, first, second = fam.stages(r)
        for i in fam.DTYPES:
            for o in fam.DTYPES:
                assert fam.covers(r, i, o) == (o in r.outputs(i))
                if fam.covers(r, i, o):
                    assert built(r.combine, i, o, stage=whole) and built(r.combine, i, fam.workspace(r, o), stage=first)
                    assert built(r.combine, fam.workspace(r, o), o, stage=second)  # a split's second launch
                    assert built(r.combine, i, o, "16", whole) == (i in fam.FLOAT_DTYPES)
    # Second pass of a split: fp32 partials to half outputs, never aligned; fp32 -> fp16 is not a
    # user pair (torch casts the input first) and fp16 -> bf16 is nothing.
    assert built("add", "fp32", "fp16") and not built("add", "fp32", "fp16", "16")
    assert not fam.covers(fam.BY_NAME["sum"], "fp32", "fp16") and not built("add", "fp16", "bf16")
    assert not built("max", "fp16", "fp32") and not built("max", "u8", "u8")  # exact: output-typed partials
    assert not any(fam.covers(fam.BY_NAME["mean"], i, o) for i in fam.INT_INPUTS for o in fam.DTYPES)
    # A variance: whole states to the workspace (fp32) and back, from every float input.
    assert fam.stages(fam.BY_NAME["std_mean"]) == ("var", "state", "state_var")
    assert built("welford", "bf16", "fp32", "16", "state") and built("welford", "fp32", "bf16", stage="state_var")
    assert not built("welford", "bf16", "bf16", stage="value") and not built("welford", "fp32", "bf16", stage="var")
    # An extreme and its index: the unsplit launch writes whole states (a split's first launch too),
    # output-typed values beside int64 indices; argmax and max.dim share them (bool: max.dim only).
    assert fam.stages(fam.BY_NAME["argmax"]) == fam.stages(fam.BY_NAME["min.dim"]) == ("arg", "arg", "state_arg")
    assert fam.workspace(fam.BY_NAME["max.dim"], "bf16") == "bf16"
    assert built("argmax", "bf16", "bf16", "16", "arg") and built("argmin", "i64", "i64", stage="state_arg")
    assert built("argmax", "bool", "bool", stage="arg") and not built("argmax", "bf16", "fp32", stage="arg")
    assert not built("argmax", "fp32", "fp32", stage="value") and not built("argmax", "u8", "u8", stage="arg")
    # max() and min() of every element are amax's kernels.
    assert fam.BY_NAME["max"].combine == "max" and fam.stages(fam.BY_NAME["max"]) == ("value",) * 3


def test_schemas_are_atens():
    for op in fam.GEMS_OPS:
        assert str(schemas.aten_schema(op.name)) == "aten::" + op.schema
    assert [o.name for o in fam.ATEN_OVERRIDES] == [
        "sum.dim_IntList", "sum.IntList_out", "mean.dim", "mean.out", "prod", "prod.dim_int", "prod.int_out", "amax",
        "amax.out", "amin", "amin.out", "all", "all.dim", "all.dims", "all.all_out", "all.out", "all.dims_out", "any",
        "any.dim", "any.dims", "any.all_out", "any.out", "any.dims_out", "var.correction", "var.correction_out",
        "std.correction", "std.correction_out", "var_mean.correction", "std_mean.correction", "max", "max.unary_out",
        "min", "min.unary_out", "max.dim", "max.dim_max", "min.dim", "min.dim_min", "argmax", "argmax.out", "argmin",
        "argmin.out"]
    for o in fam.ATEN_OVERRIDES:  # an own CUDA kernel, never a composite (test_extension, decision 4)
        assert schemas.has_kernel(o.name, "CUDA"), o.name


def test_generated_entry_points():
    text = fam.generated_sources()[fam.OPS_SOURCE]
    assert ("  if (reason == Fallback::kNone) return r.value;\n  return at::cuda::prod(self, dim, keepdim, dtype);"
            in text)
    assert ("const reduce::Call call{reduce_tables::kProd, self, at::IntArrayRef(dim), keepdim, dtype, std::nullopt};"
            in text)
    assert "const reduce::Call call{reduce_tables::kAmax, self, dim, keepdim, std::nullopt, std::nullopt};" in text
    assert "  const Fallback reason = reduce::into(call, {&out, nullptr});" in text
    assert "return reason == Fallback::kNone ? out : at::cuda::amax_outf(self, dim, keepdim, out);" in text
    assert "return reason == Fallback::kNone ? out : at::cuda::amin_outf(self, dim, keepdim, out);" in text
    assert "return reason == Fallback::kNone ? out : at::cuda::all_outf(self, out);" in text
    assert ("const reduce::Call call{reduce_tables::kAny, self, at::IntArrayRef(dim), keepdim, std::nullopt, "
            "std::nullopt};") in text
    assert "const reduce::Call call{reduce_tables::kMean, self, std::nullopt, false, dtype, std::nullopt};" in text
    assert "const reduce::Call call{reduce_tables::kVar, self, dim, keepdim, std::nullopt, correction};" in text
    assert "return at::cuda::var_outf(self, dim, correction, keepdim, out);" not in text  # out= overloads: below
    assert "return reason == Fallback::kNone ? out : at::cuda::std_outf(self, dim, correction, keepdim, out);" in text
    assert ("std::tuple<at::Tensor, at::Tensor> aten_impl::var_mean_correction(const at::Tensor& self, "
            "at::OptionalIntArrayRef dim, const std::optional<at::Scalar>& correction, bool keepdim) {") in text
    assert "  if (reason == Fallback::kNone) return {r.value, r.mean};\n  return at::cuda::std_mean(" in text
    # Indexed: argmax returns the index alone (dim=None: every dim), max.dim the values and indices, into
    # max.dim_max's out= tensors (named max and max_values) in that order.
    assert ("const reduce::Call call{reduce_tables::kArgmax, self, dim ? at::OptionalIntArrayRef(*dim) : std::nullopt, "
            "keepdim, std::nullopt, std::nullopt};") in text
    assert "  if (reason == Fallback::kNone) return r.index;\n  return at::cuda::argmin(self, dim, keepdim);" in text
    assert "  const Fallback reason = reduce::into(call, {nullptr, &out});" in text
    assert ("  if (reason == Fallback::kNone) return {r.value, r.index};\n  return at::cuda::max(self, dim, keepdim);"
            in text)
    assert "  const Fallback reason = reduce::into(call, {&min, &min_indices});" in text
    assert ("return reason == Fallback::kNone ? std::tie(max, max_values) : "
            "at::cuda::max_outf(self, dim, keepdim, max, max_values);") in text
    assert "  if (reason == Fallback::kNone) return r.value;\n  return at::cuda::max(self);" in text
    assert "return reason == Fallback::kNone ? out : at::cuda::min_outf(self, out);" in text
    for op in fam.GEMS_OPS:
        pair = len(fam.BY_NAME[op.name if op.name in fam.BY_NAME else op.name.split(".")[0]].results) == 2
        ret = "std::tuple<at::Tensor, at::Tensor>" if pair else "at::Tensor"
        # No Meta function: the aten op is the gems op's fake implementation (meta_from_aten).
        assert f"{ret} cuda::{op.cpp}(" in text and f"meta::{op.cpp}(" not in text and op.meta_from_aten
        assert f'reduce::unsupported("gems::{op.name}", reason, call)' in text
    for o in fam.ATEN_OVERRIDES:
        assert f'fallback_counter("{o.name}")' in text


# -- the built extension: schemas, registration and Meta functions ------------------------------


@pytest.fixture(scope="module")
def gems():
    return pytest.importorskip("gems_aot", reason="the extension is not built")


def test_registered(gems):
    for op in fam.GEMS_OPS:
        base, _, overload = op.name.partition(".")
        assert str(getattr(getattr(torch.ops.gems, base), overload or "default")._schema) == "gems::" + op.schema
    assert {o.name for o in fam.ATEN_OVERRIDES} <= set(gems.registered_ops())
    before = gems.enabled_ops()
    try:
        assert gems.enable(include=["mean", "prod", "amax"]) == [
            "amax", "amax.out", "mean.dim", "mean.out", "prod", "prod.dim_int", "prod.int_out"]
        assert gems.enable(include=["argmin", "max"]) == [  # max: max() and max.dim, and their out= forms
            "argmin", "argmin.out", "max", "max.dim", "max.dim_max", "max.unary_out"]
        enabled = set(gems.enable())  # the indexed reductions are opt-in, max() and min() are not
        assert "min.unary_out" in enabled and not {"argmax", "max.dim", "min.dim", "argmin.out"} & enabled
        assert {"argmax", "argmax.out", "max.dim", "max.dim_max"} <= set(gems.opt_in_ops())
    finally:
        gems.enable(include=before) if before else gems.disable()


def meta_inputs(dtype):
    return [
        torch.empty((), device="meta", dtype=dtype),
        torch.empty(0, 7, device="meta", dtype=dtype),
        torch.empty(4, 5, 6, device="meta", dtype=dtype),
        torch.empty(2, 3, 4, 5, device="meta", dtype=dtype).to(memory_format=torch.channels_last),
        torch.empty(6, 4, device="meta", dtype=dtype).t(),
    ]


def torch_and_gems_calls(x):
    """(torch's call, gems' call) pairs, each a function of the input, of every gems op over dims,
    keepdim and dtype."""
    g = torch.ops.gems
    dims = [None, [], [0], [-1]] + ([[0, -1], [1]] if x.dim() > 1 else [])
    for dim, keepdim, dtype in itertools.product(dims, (False, True), (None, torch.float32)):
        yield (lambda t: torch.sum(t, dim, keepdim, dtype=dtype)), (lambda t: g.sum.dim_IntList(t, dim, keepdim,
                                                                                                dtype=dtype))
        yield (lambda t: torch.mean(t, dim, keepdim, dtype=dtype)), (lambda t: g.mean.dim(t, dim, keepdim, dtype=dtype))
        if dim is not None:
            yield (lambda t: torch.amax(t, dim, keepdim)), (lambda t: g.amax(t, dim, keepdim))
            yield (lambda t: torch.amin(t, dim, keepdim)), (lambda t: g.amin(t, dim, keepdim))
        if isinstance(dim, list) and len(dim) == 1:
            yield (lambda t: torch.prod(t, dim[0], keepdim, dtype=dtype)), (
                lambda t: g.prod.dim_int(t, dim[0], keepdim, dtype=dtype))
        for name in ("all", "any"):
            if dim is None:
                yield (lambda t: getattr(torch, name)(t, None, keepdim)), (lambda t: getattr(g, name).dims(t, None,
                                                                                                        keepdim))
            elif len(dim) == 1:
                yield (lambda t: getattr(torch, name)(t, dim[0], keepdim)), (
                    lambda t: getattr(g, name).dim(t, dim[0], keepdim))
            else:
                yield (lambda t: getattr(torch, name)(t, dim, keepdim)), (lambda t: getattr(g, name).dims(t, dim,
                                                                                                       keepdim))
        for name in VARIANCES if dtype is None else ():
            for correction in (None, 0, 2.5):
                yield (lambda t: getattr(torch, name)(t, dim, correction=correction, keepdim=keepdim)), (
                    lambda t: getattr(g, name).correction(t, dim, correction=correction, keepdim=keepdim))
        if dtype is None and (dim is None or len(dim) == 1):  # argmax (dim None: flattened), max.dim
            d = None if dim is None else dim[0]
            for name in ("argmax", "argmin"):
                yield (lambda t: getattr(torch, name)(t, d, keepdim)), (lambda t: getattr(g, name)(t, d, keepdim))
            if d is not None:
                for name in ("max", "min"):
                    yield (lambda t: tuple(getattr(torch, name)(t, d, keepdim))), (
                        lambda t: getattr(g, name).dim(t, d, keepdim))
    for name in ("sum", "mean", "prod", "all", "any", "max", "min"):
        yield (lambda t: getattr(torch, name)(t)), (lambda t: getattr(g, name)(t))


def outcome(fn, x):
    """(shape, dtype, strides) of fn(x), or its error."""
    try:
        r = fn(x)
        if isinstance(r, tuple):  # (var, mean)
            return tuple((tuple(t.shape), t.dtype, t.stride()) for t in r)
        return tuple(r.shape), r.dtype, r.stride()
    except (RuntimeError, IndexError) as e:
        return type(e).__name__, str(e)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int32, torch.bool, torch.uint8])
def test_meta_functions(gems, dtype):
    """Every gems op on meta tensors gives what the aten op gives there (its fake
    implementation): shape, dtype and strides, or the error (mean of integers, amax over an empty
    dim, ...)."""
    errors = 0
    for x in meta_inputs(dtype):
        for theirs, ours in torch_and_gems_calls(x):
            expected = outcome(theirs, x)
            errors += isinstance(expected[0], str)
            assert outcome(ours, x) == expected
            if not isinstance(expected[0], str):
                result = ours(x)
                assert all(r.device.type == "meta" for r in (result if isinstance(result, tuple) else (result,)))
    assert errors > 0


def test_errors_match_torch(gems):
    cases = [
        (lambda x: torch.sum(x, [1, 1]), lambda x: torch.ops.gems.sum.dim_IntList(x, [1, 1])),
        (lambda x: torch.mean(x, [2]), lambda x: torch.ops.gems.mean.dim(x, [2])),
        (lambda x: torch.amax(x, [-3]), lambda x: torch.ops.gems.amax(x, [-3])),
        (lambda x: torch.prod(x, 2), lambda x: torch.ops.gems.prod.dim_int(x, 2)),
        (lambda x: torch.mean(x.int()), lambda x: torch.ops.gems.mean(x.int())),
        (lambda x: torch.mean(x.int(), dtype=torch.int64), lambda x: torch.ops.gems.mean(x.int(), dtype=torch.int64)),
        (lambda x: torch.amax(x[:0]), lambda x: torch.ops.gems.amax(x[:0])),
        (lambda x: torch.amax(x[:0], 0), lambda x: torch.ops.gems.amax(x[:0], [0])),
        (lambda x: torch.amin(x[:0], 0), lambda x: torch.ops.gems.amin(x[:0], [0])),
        (lambda x: torch.all(x, 2), lambda x: torch.ops.gems.all.dim(x, 2)),
        (lambda x: torch.any(x, [0, 0]), lambda x: torch.ops.gems.any.dims(x, [0, 0])),
        (lambda x: torch.any(x, [-3]), lambda x: torch.ops.gems.any.dims(x, [-3])),
        (lambda x: torch.var(x.int()), lambda x: torch.ops.gems.var.correction(x.int())),
        (lambda x: torch.std(x.long(), 1), lambda x: torch.ops.gems.std.correction(x.long(), [1])),
        (lambda x: torch.var_mean(x.int()), lambda x: torch.ops.gems.var_mean.correction(x.int())),
        (lambda x: torch.std_mean(x.bool(), 0), lambda x: torch.ops.gems.std_mean.correction(x.bool(), [0])),
        (lambda x: torch.var(x, [1, 1]), lambda x: torch.ops.gems.var.correction(x, [1, 1])),
        (lambda x: torch.std(x, 2), lambda x: torch.ops.gems.std.correction(x, [2])),
        (lambda x: torch.max(x[:0]), lambda x: torch.ops.gems.max(x[:0])),
        (lambda x: torch.min(x[:, :0]), lambda x: torch.ops.gems.min(x[:, :0])),
        (lambda x: torch.max(x[:0], -2), lambda x: torch.ops.gems.max.dim(x[:0], -2)),
        (lambda x: torch.min(x, 2), lambda x: torch.ops.gems.min.dim(x, 2)),
        (lambda x: torch.max(x.cfloat(), 0), lambda x: torch.ops.gems.max.dim(x.to(torch.complex64), 0)),
        (lambda x: torch.argmax(x[:0]), lambda x: torch.ops.gems.argmax(x[:0])),
        (lambda x: torch.argmin(x[:0], -2, True), lambda x: torch.ops.gems.argmin(x[:0], -2, True)),
        (lambda x: torch.argmax(x, -3), lambda x: torch.ops.gems.argmax(x, -3)),
        (lambda x: torch.argmax(x.bool(), 0), lambda x: torch.ops.gems.argmax(x.bool(), 0)),
        (lambda x: torch.argmin(x[:0].bool()), lambda x: torch.ops.gems.argmin(x[:0].bool())),
        (lambda x: torch.argmax(x.cfloat()), lambda x: torch.ops.gems.argmax(x.to(torch.complex64))),
    ]
    errors = 0
    for theirs, ours in cases:  # on meta tensors: torch's meta functions check less than its kernels
        expected = outcome(theirs, torch.empty(3, 4, device="meta"))
        errors += expected[0] in ("RuntimeError", "IndexError")
        assert outcome(ours, torch.empty(3, 4, device="meta")) == expected
    assert errors > len(cases) // 2


# -- AOT compile -----------------------------------------------------------------------------

SAMPLES = [
    {"combine": "add", "stage": "value", "kind": "inner_r2k", "in_dtype": "fp32", "out_dtype": "fp32", "align": "16"},
    {"combine": "add", "stage": "value", "kind": "inner_r32", "in_dtype": "bool", "out_dtype": "i64", "align": "any"},
    {"combine": "mul", "stage": "value", "kind": "outer_b128", "in_dtype": "bf16", "out_dtype": "fp32", "align": "16"},
    {"combine": "max", "stage": "value", "kind": "outer_b16", "in_dtype": "fp16", "out_dtype": "fp16", "align": "any"},
    {"combine": "min", "stage": "value", "kind": "inner_r512", "in_dtype": "bool", "out_dtype": "bool", "align": "any"},
    {"combine": "and", "stage": "value", "kind": "inner_r2k", "in_dtype": "bf16", "out_dtype": "bool", "align": "16"},
    {"combine": "or", "stage": "value", "kind": "outer_b64", "in_dtype": "u8", "out_dtype": "u8", "align": "any"},
    {"combine": "welford", "stage": "var", "kind": "inner_r2k", "in_dtype": "bf16", "out_dtype": "bf16", "align": "16"},
    {"combine": "welford", "stage": "var", "kind": "outer_b128", "in_dtype": "fp32", "out_dtype": "fp32",
     "align": "16"},
    {"combine": "welford", "stage": "state", "kind": "inner_r32", "in_dtype": "fp16", "out_dtype": "fp32",
     "align": "any"},
    {"combine": "welford", "stage": "state_var", "kind": "outer_b4", "in_dtype": "fp32", "out_dtype": "fp16",
     "align": "any"},
    {"combine": "argmax", "stage": "arg", "kind": "inner_r2k", "in_dtype": "bf16", "out_dtype": "bf16", "align": "16"},
    {"combine": "argmin", "stage": "arg", "kind": "outer_b128", "in_dtype": "fp32", "out_dtype": "fp32", "align": "16"},
    {"combine": "argmax", "stage": "arg", "kind": "inner_r32", "in_dtype": "bool", "out_dtype": "bool", "align": "any"},
    {"combine": "argmax", "stage": "state_arg", "kind": "outer_b16", "in_dtype": "i64", "out_dtype": "i64",
     "align": "any"},
]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("point", SAMPLES, ids=lambda p: GRID.symbol(p))
def test_aot_compile(point, arch):
    from aot.compiler import compile_variant

    v = GRID.make(point, arch)
    cubin, meta = compile_variant(v, arch)
    assert cubin[:4] == b"\x7fELF"
    assert meta["name"] == v.kernel.split(":")[1]
    assert meta["num_warps"] == v.num_warps and meta["num_ctas"] == 1
    assert meta["global_scratch_size"] == 0 and not meta["launch_cooperative_grid"]
    assert meta["shared"] <= 48 * 1024
