"""Reduce family: the reductions of REDUCTIONS (every dim, a dim or a dim list, keepdim, dtype= and
out=, as each aten op has them).

Its three places: the kernels (kernels/reduce.py: `reduce_inner`, `reduce_outer` and the
combine functions), these declarations, and the C++ driver (csrc/ops/reduce.cpp, with the
planner in csrc/ops/reduce_plan.h).

A reduction is a `Reduction` below: the combine function it runs (a name of COMBINES and of
kernels/reduce.py `_combine`), the input dtypes the kernels reduce, torch's rule for its result
dtype and for an empty reduction, and its overloads. From REDUCTIONS come the grid's variants,
the gems ops and aten overrides, their C++ entry points (`family_reduce_ops.cpp`, generated into
the build folder) and the tables the driver plans with (`reduce_tables.h`, likewise).

One grid, "reduce", indexed by combine function, stage (what a launch reads and writes: STAGES),
kernel kind (which kernel and tile), input dtype, output dtype and alignment. The planner below (and its C++ form in reduce_plan.h, which
a CPU test compiles and compares) views a reduction as groups of kept and reduced dims in memory
order and picks the kind from its geometry: inner kinds when the innermost dims in memory are
reduced (by the length R of that contiguous run), outer kinds when they are kept (by the length
B of the kept contiguous run). Where few programs would walk a long reduction it splits it:
partials (whole states where the accumulator holds several values: welford; the extreme and its
index: argmax) go to a workspace that a second launch combines.

A reduction returns some of the results its launch's finish writes (`RESULTS`): the value (of
the dtype its result rule gives), the mean beside a variance (var_mean) and the index of the
extreme (argmax, max.dim: int64, whatever the value's dtype). The index is an element's position
in the reduced dims in torch's order, which the driver gives the kernels as an index stride per
reduced dim (`Dim.index_stride`): reducing every dim of a permuted tensor indexes it as flattened.
"""

from __future__ import annotations

import dataclasses
import json

from aot import schemas
from aot.ops import AtenOverride, Example, GemsOp, T, bench_case
from aot.variants import FLOAT_DTYPES, KernelGrid, Variant, ptr


@dataclasses.dataclass(frozen=True)
class Combine:
    """A combine function of kernels/reduce.py: its identity for an fp32 and an int64
    accumulator, whether it is exact (picks one of its operands, so split partials keep the
    output dtype; otherwise they are accumulator-typed: fp32 or int64), and how many values its
    accumulator holds (welford: mean, m2, count; a split's partials are then whole states, one
    workspace plane per value, and a finish other than "value" projects them)."""

    float_identity: float
    int_identity: int
    exact: bool = False
    values: int = 1
    values_warps: int = 1  # the kinds' warps times this: a state of several values in as many registers
    # The state's last value is the element's index (int64, whatever the accumulator's type): the
    # extreme's (argmax). A split's partials are then the value (output-typed: exact) and an int64
    # index plane; the finish "arg" writes both.
    indexed: bool = False


COMBINES = {
    "add": Combine(0.0, 0),
    "mul": Combine(1.0, 1),
    "max": Combine(float("-inf"), -(2**63), exact=True),
    "min": Combine(float("inf"), 2**63 - 1, exact=True),
    "and": Combine(1.0, 1, exact=True),  # of whether elements are nonzero (kernels/reduce.py _lift)
    "or": Combine(0.0, 0, exact=True),
    "welford": Combine(0.0, 0, values=3, values_warps=2),  # (mean, m2, count), combined by Chan's formula
    # (extreme, index), compared as ATen's GreaterOrNan / LessOrNan: a NaN wins, a tie goes to the lower index.
    "argmax": Combine(float("-inf"), -(2**63), exact=True, values=2, values_warps=2, indexed=True),
    "argmin": Combine(float("inf"), 2**63 - 1, exact=True, values=2, values_warps=2, indexed=True),
}

# The dtypes of the grid's in_dtype and out_dtype axes.
DTYPES = FLOAT_DTYPES + ("i32", "i64", "bool", "u8", "i8", "i16")
INT_INPUTS = ("i32", "i64", "bool", "u8", "i8", "i16")
# torch's result dtype rules (of the value: an index is int64): "promote" (get_dtype_from_self with
# integers to int64: sum, prod), "floating" (the same, and only floating or complex results: mean),
# "same" (the input's; an out= of another dtype raises amax's error: amax), "bool" (bool, uint8 for
# uint8 input; an out= of either: all, any), "real" (the input's real dtype, floating or complex
# input only; an out= of any dtype the input casts to: var, std), "input" (the input's, complex
# input raises torch's error, an out= of another dtype the structured kernel's: max.dim), "arg"
# (the same, and bool input raises too: argmax, whose value is no result), "unary" (the input's;
# an out= of another dtype or device, or of an empty input, runs ATen's kernel, which checks those
# after resizing it: max() and min() without dim).
RESULT_RULES = ("promote", "floating", "same", "bool", "real", "input", "arg", "unary")
# An empty reduction: the combine's identity (sum 0, prod 1), NaN (mean), or torch's error:
# "raise" (zero_numel_check_dims of the dims as given: amax, max()), "raise_arg" (of the wrapped
# dim, and without one an IndexError: argmax's check_argmax_argmin, max.dim).
EMPTY_RULES = ("identity", "nan", "raise", "raise_arg")
# What a reduction returns, in order, of what its finish writes: the value, the mean beside a
# variance (var_mean), the index of the extreme (int64; argmax, max.dim).
RESULTS = ("value", "mean", "index")
# What a launch reads and writes (kernels/reduce.py SOURCE, FINISH): "value" reads elements and
# writes the combined value (times scale); a multi-valued combine's "state" writes its state (a
# split's first launch), "var" projects it (m2 / max(count - correction, 0), its root for std, the
# mean beside it for var_mean), "state_var" projects states a first launch wrote; an indexed
# combine's "arg" writes the extreme and its index (the whole state: a split's first launch too),
# "state_arg" reads such partials.
STAGES = {"value": ("elements", "value"), "state": ("elements", "state"), "var": ("elements", "var"),
          "state_var": ("state", "var"), "arg": ("elements", "arg"), "state_arg": ("state", "arg")}
FINISHES = ("value", "var", "arg")


@dataclasses.dataclass(frozen=True)
class Reduction:
    name: str  # the aten op, or "op.overload" where the op's overloads are two reductions (max, max.dim)
    combine: str  # a key of COMBINES
    dtypes: tuple  # the input dtypes its kernels reduce (others run ATen's)
    result: str  # a RESULT_RULES entry
    empty: str  # an EMPTY_RULES entry
    gems_ops: tuple  # overloads served as torch.ops.gems.<overload>, schemas as aten's
    aten_overrides: tuple  # overloads `enable()` overrides
    scaled: bool = False  # the result is the combined value times outputs / inputs (mean)
    empty_dims_reduce_all: bool = True  # dim=[] reduces every dim (sum), else none (all: allow_empty_dims)
    finish: str = "value"  # a FINISHES entry: how the combined accumulator becomes the result
    sqrt: bool = False  # the square root of the finish (std)
    results: tuple = ("value",)  # RESULTS entries: what the op returns (and its out= overload takes), in order
    error_name: str = ""  # what torch's dtype error calls the op, where not its name ("std and var")
    # Its overrides are opt-in (aot/ops.py AtenOverride): measured slower than ATen's kernel.
    opt_in: bool = False

    def __post_init__(self):
        assert set(self.results) <= set(RESULTS) and self.results, self.name
        assert ("index" in self.results) == COMBINES[self.combine].indexed == (self.finish == "arg"), self.name
        assert ("mean" not in self.results) or self.finish == "var", self.name

    @property
    def op(self) -> str:
        """The aten op (what torch's messages call it)."""
        return self.name.split(".")[0]

    @property
    def with_mean(self) -> bool:
        return "mean" in self.results

    def outputs(self, in_dtype: str) -> tuple:
        """The output dtypes torch gives this input whose kernel reads the input as it is: the
        input's, fp32 for fp16 / bf16 (dtype=torch.float32), int64 for promoted integers; bool,
        and uint8 for uint8 (an out= of uint8 for other inputs runs ATen's).
        (ATen casts the input first for other dtype= values: those run ATen's.)"""
        if in_dtype not in self.dtypes:
            return ()
        if self.result in ("same", "input", "arg", "unary"):
            return (in_dtype,)
        if self.result == "bool":
            return ("bool", "u8") if in_dtype == "u8" else ("bool",)
        if self.result == "real":
            return (in_dtype,)
        if in_dtype in FLOAT_DTYPES:
            return (in_dtype,) if in_dtype == "fp32" else (in_dtype, "fp32")
        return ("i64",)


REDUCTIONS = (
    Reduction("sum", "add", DTYPES, "promote", "identity", ("sum", "sum.dim_IntList"),
              ("sum.dim_IntList", "sum.IntList_out")),
    Reduction("mean", "add", FLOAT_DTYPES, "floating", "nan", ("mean", "mean.dim"), ("mean.dim", "mean.out"),
              scaled=True),
    Reduction("prod", "mul", FLOAT_DTYPES + ("i32", "i64"), "promote", "identity", ("prod", "prod.dim_int"),
              ("prod", "prod.dim_int", "prod.int_out")),
    Reduction("amax", "max", FLOAT_DTYPES + ("i32", "i64", "bool"), "same", "raise", ("amax",), ("amax", "amax.out")),
    Reduction("amin", "min", FLOAT_DTYPES + ("i32", "i64", "bool"), "same", "raise", ("amin",), ("amin", "amin.out")),
    Reduction("all", "and", DTYPES, "bool", "identity", ("all", "all.dim", "all.dims"),
              ("all", "all.dim", "all.dims", "all.all_out", "all.out", "all.dims_out"), empty_dims_reduce_all=False),
    Reduction("any", "or", DTYPES, "bool", "identity", ("any", "any.dim", "any.dims"),
              ("any", "any.dim", "any.dims", "any.all_out", "any.out", "any.dims_out"), empty_dims_reduce_all=False),
    # The Welford kernels ran at 0.75-0.81x ATen's (H100, 16M elements, docs/MEASUREMENTS.md): opt-in.
    Reduction("var", "welford", FLOAT_DTYPES, "real", "nan", ("var.correction",), ("var.correction",
              "var.correction_out"), finish="var", error_name="std and var", opt_in=True),
    Reduction("std", "welford", FLOAT_DTYPES, "real", "nan", ("std.correction",), ("std.correction",
              "std.correction_out"), finish="var", sqrt=True, error_name="std and var", opt_in=True),
    Reduction("var_mean", "welford", FLOAT_DTYPES, "real", "nan", ("var_mean.correction",), ("var_mean.correction",),
              finish="var", results=("value", "mean"), opt_in=True),
    Reduction("std_mean", "welford", FLOAT_DTYPES, "real", "nan", ("std_mean.correction",), ("std_mean.correction",),
              finish="var", sqrt=True, results=("value", "mean"), opt_in=True),
    # max() and min() of every element, as amax; with a dim, the extreme and its index.
    Reduction("max", "max", FLOAT_DTYPES + ("i32", "i64", "bool"), "unary", "raise", ("max",),
              ("max", "max.unary_out")),
    Reduction("min", "min", FLOAT_DTYPES + ("i32", "i64", "bool"), "unary", "raise", ("min",),
              ("min", "min.unary_out")),
    # The indexed reductions are opt-in: on an H100 they measured 0.56-0.84x ATen's device speed
    # (argmax and max.dim over rows of 4096 and 32000, fp32 and bf16).
    Reduction("max.dim", "argmax", FLOAT_DTYPES + ("i32", "i64", "bool"), "input", "raise_arg", ("max.dim",),
              ("max.dim", "max.dim_max"), finish="arg", results=("value", "index"), opt_in=True),
    Reduction("min.dim", "argmin", FLOAT_DTYPES + ("i32", "i64", "bool"), "input", "raise_arg", ("min.dim",),
              ("min.dim", "min.dim_min"), finish="arg", results=("value", "index"), opt_in=True),
    # The index alone; dim=None indexes the flattened input. ATen refuses bool input.
    Reduction("argmax", "argmax", FLOAT_DTYPES + ("i32", "i64"), "arg", "raise_arg", ("argmax",),
              ("argmax", "argmax.out"), finish="arg", results=("index",), opt_in=True),
    Reduction("argmin", "argmin", FLOAT_DTYPES + ("i32", "i64"), "arg", "raise_arg", ("argmin",),
              ("argmin", "argmin.out"), finish="arg", results=("index",), opt_in=True),
)
BY_NAME = {r.name: r for r in REDUCTIONS}


def accumulator(dtype: str) -> str:
    """The kernels' accumulator for an output dtype (kernels/reduce.py acc_ty)."""
    return "fp32" if dtype in FLOAT_DTYPES else "i64"


def covers(reduction: Reduction, in_dtype: str, out_dtype: str) -> bool:
    """Whether the kernels run this reduction from in_dtype to out_dtype as torch does."""
    return out_dtype in reduction.outputs(in_dtype)


def workspace(reduction: Reduction, out_dtype: str) -> str:
    """The dtype of a split's partials, which the second launch combines into the output."""
    return out_dtype if COMBINES[reduction.combine].exact else accumulator(out_dtype)


def stages(reduction: Reduction) -> tuple:
    """(whole, first, second): the STAGES of an unsplit launch and of a split's two launches. An
    indexed combine's finish writes its whole state, so a split's first launch is the unsplit one."""
    c = COMBINES[reduction.combine]
    if c.values == 1:
        return "value", "value", "value"
    first = reduction.finish if c.indexed else "state"
    return reduction.finish, first, "state_" + reduction.finish


# -- kinds and the planner ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Kind:
    """A kernel and its tile. `max_run`: the longest contiguous run (R for inner kinds, B for
    outer ones) the planner gives it; None for the last kind of each kernel, which takes the rest."""

    kernel: str  # "inner" | "outer"
    max_run: int | None
    block_out: int  # outputs per program
    block_r: int  # reduced elements per step
    num_warps: int = 4


KINDS = {
    "inner_r32": Kind("inner", 64, 64, 32),  # many short rows per program
    "inner_r128": Kind("inner", 512, 32, 128),
    "inner_r512": Kind("inner", 2048, 8, 512),
    "inner_r2k": Kind("inner", None, 1, 2048),  # long rows, full reductions (split)
    "outer_b4": Kind("outer", 4, 4, 512),
    "outer_b16": Kind("outer", 16, 16, 128),
    "outer_b64": Kind("outer", 64, 64, 32),
    "outer_b128": Kind("outer", None, 128, 32),  # wide kept runs
}
# A launch of at most TARGET_PROGRAMS / 2 programs is split to about TARGET_PROGRAMS programs of
# at least MIN_SPLIT_STEPS steps. Fixed numbers rather than the device's SM count, so an input is
# reduced in the same order on every GPU.
TARGET_PROGRAMS = 1024
MIN_SPLIT_STEPS = 4
MAX_SPLITS = 1024
MAX_DIMS = 64  # ATen's DimMask: torch reduces at most 64 dims
KEPT_GROUPS = 3  # kept dim groups the inner kernel takes (the outer kernel: 2 and the run B)
OUTER_REDUCED_GROUPS = 2  # reduced dim groups besides the innermost one


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclasses.dataclass
class Dim:
    """A dim, or a coalesced group of dims. Strides in elements: of the input, of the output
    (0 for reduced dims) and of the contiguous split workspace; and for a reduced dim of an indexed
    reduction, of the index (the reduced dims' strides in a contiguous tensor of their sizes, in
    torch's order; else 0)."""

    size: int = 1
    in_stride: int = 0
    out_stride: int = 0
    ws_stride: int = 0
    reduced: bool = False
    index_stride: int = 0


@dataclasses.dataclass
class Plan:
    """The kernels' view of a reduction (kernels/reduce.py)."""

    inner: bool  # reduce_inner, else reduce_outer
    kind: str
    kept: list  # 3 Dims, outermost first, padded in front; reduce_outer takes kept[1], kept[2]
    reduced_outer: list  # 2 Dims walked one index at a time, outermost first, padded in front
    run: Dim  # the contiguous run: reduced (reduce_inner, R) or kept (reduce_outer, B)
    reduced_inner: Dim  # reduce_outer: the innermost reduced dim, walked in BLOCK_R steps


def kind_for(inner: bool, run: int) -> str:
    kernel = "inner" if inner else "outer"
    return next(name for name, k in KINDS.items() if k.kernel == kernel and (k.max_run is None or run <= k.max_run))


def _coalesces(outer: Dim, inner: Dim) -> bool:
    if outer.reduced != inner.reduced or outer.in_stride != inner.size * inner.in_stride:
        return False
    if inner.reduced:
        return outer.index_stride == inner.size * inner.index_stride
    return outer.out_stride == inner.size * inner.out_stride and outer.ws_stride == inner.size * inner.ws_stride


def plan(dims: list) -> Plan | str:
    """Groups dims in memory order and fits them to a kernel; "layout" when the innermost dim is
    strided, "rank" when there are more groups than the kernels take."""
    # Outermost first; broadcast (stride 0) dims outermost, so they never end a contiguous run.
    ordered = sorted((d for d in dims if d.size != 1), key=lambda d: (d.in_stride != 0, -d.in_stride))
    groups = []
    for d in ordered:
        if groups and _coalesces(groups[-1], d):
            last = groups[-1]
            last.size *= d.size
            last.in_stride, last.out_stride, last.ws_stride, last.index_stride = (
                d.in_stride, d.out_stride, d.ws_stride, d.index_stride)
        else:
            groups.append(dataclasses.replace(d))
    if not any(g.reduced for g in groups):  # only size-1 dims are reduced: a one-element reduction
        groups.insert(0, Dim(1, 1, reduced=True))
    if groups[-1].in_stride == 0:  # every dim broadcast: a one-element contiguous run
        groups.append(Dim(1, 1, reduced=True))
    elif groups[-1].in_stride != 1:
        return "layout"
    kept = [g for g in groups if not g.reduced]
    reduced = [g for g in groups if g.reduced]
    inner = groups[-1].reduced
    if inner:
        run, reduced_inner = reduced.pop(), Dim()
        max_kept = KEPT_GROUPS
    else:
        run, reduced_inner = kept.pop(), reduced.pop()
        max_kept = KEPT_GROUPS - 1
    if len(kept) > max_kept or len(reduced) > OUTER_REDUCED_GROUPS:
        return "rank"
    kept = [Dim() for _ in range(KEPT_GROUPS - len(kept))] + kept
    reduced = [Dim(reduced=True) for _ in range(OUTER_REDUCED_GROUPS - len(reduced))] + reduced
    return Plan(inner, kind_for(inner, run.size), kept, reduced, run, reduced_inner)


def vec_operands(p: Plan) -> list:
    """The input strides (and B) a kernel takes in units of VEC."""
    v = [d.in_stride for d in p.kept[0 if p.inner else 1:]] + [d.in_stride for d in p.reduced_outer]
    if not p.inner:
        v += [p.reduced_inner.in_stride, p.run.size]
    return v


def vec_for(p: Plan, element_bytes: int, aligned_pointer: bool) -> int:
    """VEC of an aligned variant (the elements in 16 bytes) where the input pointer is 16-byte
    aligned and every vec operand a multiple of it, else 1."""
    vec = 16 // element_bytes
    if not aligned_pointer or any(x % vec for x in vec_operands(p)):
        return 1
    return vec


def program_count(p: Plan) -> int:
    """Programs of a launch: one per (outer kept indices, BLOCK_OUT block of the innermost kept dim)."""
    block_out = KINDS[p.kind].block_out
    if p.inner:
        return p.kept[0].size * p.kept[1].size * ceil_div(p.kept[2].size, block_out)
    return p.kept[1].size * p.kept[2].size * ceil_div(p.run.size, block_out)


def reduced_length(p: Plan) -> int:
    return p.run.size if p.inner else p.reduced_inner.size


def outer_count(p: Plan) -> int:
    return p.reduced_outer[0].size * p.reduced_outer[1].size


@dataclasses.dataclass
class Split:
    """Which part of the reduction split s covers (kernels/reduce.py); one split covers all."""

    count: int
    r_step: int
    r_len: int
    ro_step: int
    ro_len: int


def choose_split(p: Plan, programs: int, allow: bool) -> Split:
    r, ro = reduced_length(p), outer_count(p)
    s = Split(1, 0, r, 0, ro)
    if not allow or programs * 2 > TARGET_PROGRAMS:
        return s
    block_r = KINDS[p.kind].block_r
    chunks = ceil_div(r, block_r)
    want = min(ceil_div(TARGET_PROGRAMS, programs), ro * chunks // MIN_SPLIT_STEPS, MAX_SPLITS)
    if want < 2:
        return s
    if ro >= want:  # whole outer indices per split
        s.ro_len = s.ro_step = ceil_div(ro, want)
        s.count = ceil_div(ro, s.ro_len)
    else:  # whole BLOCK_R chunks of the inner run per split, every outer index
        s.r_len = s.r_step = ceil_div(chunks, want) * block_r
        s.count = ceil_div(r, s.r_len)
    return s


# -- the grid -----------------------------------------------------------------------------------

# "16": the input pointer is 16-byte aligned and the input strides (and B) are multiples of
# VEC = 16 bytes of elements, so contiguous runs load in 16-byte vectors (see kernels/reduce.py).
ALIGNS = ("any", "16")
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}

_INNER_ARGS = (
    "KEPT1", "KEPT2", "in_k0", "in_k1", "in_k2", "out_k0", "out_k1", "out_k2",
    "R", "RO", "RO1", "in_ro0", "in_ro1", "ix_r", "ix_ro0", "ix_ro1", "r_step", "r_len", "ro_step", "ro_len",
    "out_split",
)  # fmt: skip
_OUTER_ARGS = (
    "B", "KEPT1", "in_k0", "in_k1", "out_k0", "out_k1", "out_b",
    "R", "in_r", "RO", "RO1", "in_ro0", "in_ro1", "ix_r", "ix_ro0", "ix_ro1", "r_step", "r_len", "ro_step",
    "ro_len", "out_split",
)  # fmt: skip
_VALUE_ARGS = ("in_value", "out_value", "has_mean", "has_value", "take_sqrt")


def _pairs(combine: str) -> dict:
    """stage -> the (input, output) dtypes the reductions of a combine run in it, and whether its
    input is the input tensor (an aligned variant helps) rather than a split's partials."""
    pairs = {}
    for r in REDUCTIONS:
        if r.combine != combine:
            continue
        whole, first, second = stages(r)
        for i in r.dtypes:
            for o in r.outputs(i):
                ws = workspace(r, o)
                pairs[(whole, i, o)] = True
                pairs[(first, i, ws)] = True
                pairs.setdefault((second, ws, o), False)
    return pairs


_PAIRS = {c: _pairs(c) for c in COMBINES}


def identity(combine: str, out_dtype: str):
    c = COMBINES[combine]
    return c.float_identity if accumulator(out_dtype) == "fp32" else c.int_identity


def _reduce(point, arch):
    combine, stage, kind, in_dtype, out_dtype, align = (
        point[a] for a in ("combine", "stage", "kind", "in_dtype", "out_dtype", "align"))
    reads_input = _PAIRS[combine].get((stage, in_dtype, out_dtype))
    if reads_input is None:
        return None
    if align == "16" and not (in_dtype in FLOAT_DTYPES and reads_input):
        return None
    k = KINDS[kind]
    args = _INNER_ARGS if k.kernel == "inner" else _OUTER_ARGS
    # r_step is a multiple of BLOCK_R: the hint keeps split starts aligned.
    hints = ("in_ptr", "r_step") if align == "16" else ("r_step",)
    vec = 16 // ELEMENT_BYTES[in_dtype] if align == "16" else 1
    source, finish = STAGES[stage]
    consts = (("COMBINE", combine), ("IDENTITY", identity(combine, out_dtype)), ("SOURCE", source), ("FINISH", finish),
              ("VEC", vec), ("BLOCK_OUT", k.block_out), ("BLOCK_R", k.block_r))
    sig = (("in_ptr", ptr(in_dtype)), ("out_ptr", ptr(out_dtype)), ("mean_ptr", ptr(out_dtype)),
           ("in_index_ptr", ptr("i64")), ("index_ptr", ptr("i64")))
    sig += tuple((a, "i64") for a in args + _VALUE_ARGS) + (("scale", "fp32"), ("correction", "fp32"))
    sig += tuple((n, "constexpr") for n, _ in consts)
    return Variant(kernel=f"kernels.reduce:reduce_{k.kernel}", signature=sig, constexprs=consts,
                   divisible16=hints, num_warps=k.num_warps * COMBINES[combine].values_warps)


GRIDS = [
    KernelGrid(
        "reduce",
        (("combine", tuple(COMBINES)), ("stage", tuple(STAGES)), ("kind", tuple(KINDS)), ("in_dtype", DTYPES),
         ("out_dtype", DTYPES), ("align", ALIGNS)),
        _reduce,
        doc="out = in combined over the reduced dims, then finished (times scale, a variance, an extreme and its "
            "index); fp32 / int64 accumulation",
    ),
]


def _aten_schema_text(name: str) -> str:
    return str(schemas.aten_schema(name)).removeprefix("aten::")


def _example(name: str) -> Example:
    """A (6, 10) input reduced over dim 1, where the overload takes a dim."""
    dim = {"int": (1,), "List[int]": ((1,),), "Optional[List[int]]": ((1,),)}
    types_ = {a.name: str(a.real_type) for a in schemas.aten_schema(name).arguments}
    return Example((T((6, 10)),) + dim.get(types_.get("dim"), ()))


# The gems ops are aten's (same schemas and results): aten's fake implementations serve them.
GEMS_OPS = [GemsOp(_aten_schema_text(name), meta_from_aten=True, example=_example(name))
            for r in REDUCTIONS for name in r.gems_ops]
ATEN_OVERRIDES = [AtenOverride(name, r.opt_in) for r in REDUCTIONS for name in r.aten_overrides]


def bench_cases() -> list:
    return [bench_case("sum", "sum.dim_IntList", "reduce", "rows", FLOAT_DTYPES + ("i32", "i64"), extra_args=([1],),
                       out=lambda dt: "i64" if dt in INT_INPUTS else dt),
            bench_case("mean", "mean.dim", "reduce", "rows", FLOAT_DTYPES, extra_args=([1],)),
            bench_case("prod", "prod.dim_int", "reduce", "rows", FLOAT_DTYPES + ("i32",), extra_args=(1,),
                       out=lambda dt: "i64" if dt in INT_INPUTS else dt),
            bench_case("amax", "amax", "reduce", "rows", FLOAT_DTYPES + ("i32",), extra_args=([1],)),
            bench_case("amin", "amin", "reduce", "rows", FLOAT_DTYPES + ("i32",), extra_args=([1],)),
            bench_case("all", "all.dim", "reduce", "rows", FLOAT_DTYPES + ("bool",), extra_args=(1,),
                       out=lambda dt: "bool"),
            bench_case("any", "any.dim", "reduce", "rows", FLOAT_DTYPES + ("bool",), extra_args=(1,),
                       out=lambda dt: "bool"),
            bench_case("var", "var.correction", "reduce", "rows", FLOAT_DTYPES, extra_args=([1],)),
            bench_case("std", "std.correction", "reduce", "rows", FLOAT_DTYPES, extra_args=([1],)),
            bench_case("var_mean", "var_mean.correction", "reduce", "rows", FLOAT_DTYPES, extra_args=([1],)),
            # Rows of logits (4096 rows; --sizes 131072000: a 32000 vocabulary) and a full reduction.
            bench_case("argmax", "argmax", "reduce", "rowwise_reduce", FLOAT_DTYPES + ("i32",), extra_args=(1,),
                       out=lambda dt: "i64"),
            bench_case("argmax_all", "argmax", "reduce", "full", FLOAT_DTYPES, out=lambda dt: "i64"),
            bench_case("max", "max.dim", "reduce", "rowwise_reduce", FLOAT_DTYPES + ("i32",), extra_args=(1,)),
            bench_case("max", "max", "reduce", "full", FLOAT_DTYPES + ("i32",))]


# -- generated sources --------------------------------------------------------------------------

TABLES_HEADER = "reduce_tables.h"
OPS_SOURCE = "family_reduce_ops.cpp"


def _enum(reduction: Reduction) -> str:
    """A reduction's name in reduce_tables.h: var_mean -> kVarMean, max.dim -> kMaxDim."""
    return "k" + "".join(part.capitalize() for part in reduction.name.replace(".", "_").split("_"))


def _cpp_list(values) -> str:
    return "{" + ", ".join(values) + "}"


def tables_header() -> str:
    """The planner's constants, the kinds' tiles and thresholds and the reductions' rules as C++
    (no torch: a CPU test compiles it with csrc/ops/reduce_plan.h). Kinds, combines and dtypes
    are indexed as on the grid's axes."""
    b = lambda v: "true" if v else "false"  # noqa: E731
    nan = "std::numeric_limits<double>::quiet_NaN()"
    empty_value = {"identity": lambda r: repr(float(COMBINES[r.combine].float_identity)), "nan": lambda r: nan,
                   "raise": lambda r: "0.0", "raise_arg": lambda r: "0.0"}
    cap = lambda n: "k" + "".join(part.capitalize() for part in n.split("_"))  # noqa: E731
    covers_rows = [_cpp_list(_cpp_list(b(covers(r, i, o)) for o in DTYPES) for i in DTYPES) for r in REDUCTIONS]
    lines = [
        "// Generated by aot/family_reduce.py from its declarations. Do not edit.",
        "#pragma once", "", "#include <cstdint>", "#include <limits>", "",
        "namespace gems::reduce_tables {", "",
        f"constexpr int64_t kTargetPrograms = {TARGET_PROGRAMS};",
        f"constexpr int64_t kMinSplitSteps = {MIN_SPLIT_STEPS};",
        f"constexpr int64_t kMaxSplits = {MAX_SPLITS};",
        f"constexpr int kMaxDims = {MAX_DIMS};",
        f"constexpr int kKeptGroups = {KEPT_GROUPS};",
        f"constexpr int kOuterReducedGroups = {OUTER_REDUCED_GROUPS};", "",
        f"// Kinds: {', '.join(f'{i} = {n}' for i, n in enumerate(KINDS))}. A max run of -1: no limit.",
        f"constexpr int kNumKinds = {len(KINDS)};",
        f"constexpr bool kKindInner[kNumKinds] = {_cpp_list(b(k.kernel == 'inner') for k in KINDS.values())};",
        f"constexpr int64_t kKindMaxRun[kNumKinds] = "
        f"{_cpp_list(str(-1 if k.max_run is None else k.max_run) for k in KINDS.values())};",
        f"constexpr int64_t kKindBlockOut[kNumKinds] = {_cpp_list(str(k.block_out) for k in KINDS.values())};",
        f"constexpr int64_t kKindBlockR[kNumKinds] = {_cpp_list(str(k.block_r) for k in KINDS.values())};", "",
        f"// Dtypes: {', '.join(f'{i} = {n}' for i, n in enumerate(DTYPES))}.",
        f"constexpr int kNumDtypes = {len(DTYPES)};", "",
        "enum Reduction : int { " + ", ".join(f"{_enum(r)} = {i}" for i, r in enumerate(REDUCTIONS)) + " };",
        f"constexpr int kNumReductions = {len(REDUCTIONS)};",
        "// The aten op: what torch's messages call it.",
        f"constexpr const char* kName[kNumReductions] = {_cpp_list(json.dumps(r.op) for r in REDUCTIONS)};",
        "// The combine function: its index on the grid's combine axis; exact ones keep split partials",
        "// in the output dtype, the others in the accumulator's (fp32, int64).",
        f"constexpr int kCombine[kNumReductions] = {_cpp_list(str(list(COMBINES).index(r.combine)) for r in REDUCTIONS)};",
        f"constexpr bool kExact[kNumReductions] = {_cpp_list(b(COMBINES[r.combine].exact) for r in REDUCTIONS)};",
        "// The accumulator's values: a split's workspace planes (of an indexed combine: the value's, besides",
        "// an int64 index plane).",
        f"constexpr int64_t kValues[kNumReductions] = "
        f"{_cpp_list(str(COMBINES[r.combine].values) for r in REDUCTIONS)};",
        "// The combine carries the element's index (argmax): the reduced dims get index strides.",
        f"constexpr bool kIndexed[kNumReductions] = {_cpp_list(b(COMBINES[r.combine].indexed) for r in REDUCTIONS)};",
        "// What the op returns (besides the value or not: argmax returns the index alone).",
        f"constexpr bool kWithValue[kNumReductions] = {_cpp_list(b('value' in r.results) for r in REDUCTIONS)};",
        f"constexpr bool kWithIndex[kNumReductions] = {_cpp_list(b('index' in r.results) for r in REDUCTIONS)};",
        "// Indices on the grid's stage axis: an unsplit launch, a split's first and second launch.",
        *(f"constexpr int kStage{part}[kNumReductions] = "
          f"{_cpp_list(str(list(STAGES).index(stages(r)[i])) for r in REDUCTIONS)};"
          for i, part in enumerate(("Whole", "First", "Second"))),
        "// A variance (finish \"var\"): its correction, its square root (std), the mean beside it.",
        f"constexpr bool kVariance[kNumReductions] = {_cpp_list(b(r.finish == 'var') for r in REDUCTIONS)};",
        f"constexpr bool kSqrt[kNumReductions] = {_cpp_list(b(r.sqrt) for r in REDUCTIONS)};",
        f"constexpr bool kWithMean[kNumReductions] = {_cpp_list(b(r.with_mean) for r in REDUCTIONS)};",
        f"constexpr const char* kErrorName[kNumReductions] = "
        f"{_cpp_list(json.dumps(r.error_name or r.op) for r in REDUCTIONS)};",
        "enum ResultRule : int { " + ", ".join(f"k{n.capitalize()} = {i}" for i, n in enumerate(RESULT_RULES)) + " };",
        f"constexpr ResultRule kResult[kNumReductions] = {_cpp_list('k' + r.result.capitalize() for r in REDUCTIONS)};",
        "// An empty reduction: fills kEmptyValue, or raises torch's error (kRaise, kRaiseArg).",
        "enum EmptyRule : int { " + ", ".join(f"{cap(n)} = {i}" for i, n in enumerate(EMPTY_RULES)) + " };",
        f"constexpr EmptyRule kEmpty[kNumReductions] = {_cpp_list(cap(r.empty) for r in REDUCTIONS)};",
        f"constexpr double kEmptyValue[kNumReductions] = {_cpp_list(empty_value[r.empty](r) for r in REDUCTIONS)};",
        f"constexpr bool kScaled[kNumReductions] = {_cpp_list(b(r.scaled) for r in REDUCTIONS)};",
        "// An explicit empty dim list reduces every dim, else none (ATen's allow_empty_dims).",
        f"constexpr bool kEmptyDimsReduceAll[kNumReductions] = "
        f"{_cpp_list(b(r.empty_dims_reduce_all) for r in REDUCTIONS)};",
        "// [reduction][input dtype][output dtype]: the kernels run it as torch does.",
        "constexpr bool kCovers[kNumReductions][kNumDtypes][kNumDtypes] = {\n    " + ",\n    ".join(covers_rows) + "};",
        "", "}  // namespace gems::reduce_tables", "",
    ]
    return "\n".join(lines)


def _core_arguments(schema) -> str:
    """The reduce::Call arguments of an overload: dim (std::nullopt: every dim), keepdim, dtype,
    correction."""
    args = {a.name: str(a.real_type) for a in schema.arguments}
    dim = {"int": "at::IntArrayRef(dim)", "Optional[int]": "dim ? at::OptionalIntArrayRef(*dim) : std::nullopt",
           "List[int]": "dim", "Optional[List[int]]": "dim", None: "std::nullopt"}
    return (f"self, {dim[args.get('dim')]}, {'keepdim' if 'keepdim' in args else 'false'}, "
            f"{'dtype' if 'dtype' in args else 'std::nullopt'}, "
            f"{'correction' if 'correction' in args else 'std::nullopt'}")


def _returned(reduction: Reduction, results: str) -> str:
    """The C++ return expression of a functional overload from reduce::Results `results`."""
    parts = [f"{results}.{name}" for name in reduction.results]
    return parts[0] if len(parts) == 1 else "{" + ", ".join(parts) + "}"


def _entry_points(reduction: Reduction) -> list:
    enum = f"reduce_tables::{_enum(reduction)}"
    lines = []
    for name in reduction.gems_ops:
        schema = schemas.aten_schema(name)
        ret, params = schemas.cpp_signature(schema)
        cpp = name.replace(".", "_")
        call = f"const reduce::Call call{{{enum}, {_core_arguments(schema)}}};"
        lines += [f"{ret} cuda::{cpp}({params}) {{", f"  {call}", "  reduce::Results r;",
                  "  const Fallback reason = reduce::functional(call, r);",
                  f"  if (reason != Fallback::kNone) reduce::unsupported(\"gems::{name}\", reason, call);",
                  f"  return {_returned(reduction, 'r')};", "}", ""]
    for name in reduction.aten_overrides:
        schema = schemas.aten_schema(name)
        ret, params = schemas.cpp_signature(schema)
        cpp = name.replace(".", "_")
        base = name.split(".")[0]
        names = ", ".join(a.name for a in schema.arguments)
        lines += [f"{ret} aten_impl::{cpp}({params}) {{",
                  f"  static FallbackCounter& counter = fallback_counter(\"{name}\");",
                  f"  const reduce::Call call{{{enum}, {_core_arguments(schema)}}};"]
        if schemas.overload_kind(schema) == "out":
            # The out= tensors receive the results in order (max.dim_max: max, max_values).
            outs = dict(zip(reduction.results, schemas.written(schema), strict=True))
            assert set(outs) <= {"value", "index"}, name
            refs = ", ".join(f"&{outs[k]}" if k in outs else "nullptr" for k in ("value", "index"))
            done = outs[reduction.results[0]] if len(outs) == 1 else f"std::tie({', '.join(outs.values())})"
            lines += [f"  const Fallback reason = reduce::into(call, {{{refs}}});", "  counter.hit(reason);",
                      f"  return reason == Fallback::kNone ? {done} : at::cuda::{base}_outf({names});", "}", ""]
        else:
            lines += ["  reduce::Results r;", "  const Fallback reason = reduce::functional(call, r);",
                      "  counter.hit(reason);",
                      f"  if (reason == Fallback::kNone) return {_returned(reduction, 'r')};",
                      f"  return at::cuda::{base}({names});", "}", ""]
    return lines


def ops_source() -> str:
    """The C++ entry points of every overload (gems::cuda::, gems::aten_impl::):
    each turns its arguments into a reduce::Call for the driver and, in an aten override, calls
    ATen's CUDA kernel with its own arguments where the driver falls back."""
    bases = sorted({name.split(".")[0] for r in REDUCTIONS for name in r.aten_overrides})
    lines = ["// Generated by aot/family_reduce.py from REDUCTIONS. Do not edit.",
             '#include "gems_reduce_ops.h"', ""]
    lines += [f"#include <ATen/ops/{base}_cuda_dispatch.h>" for base in bases]
    lines += ["", '#include "ops/reduce.h"', '#include "runtime/fallback.h"', "", "namespace gems {", ""]
    for r in REDUCTIONS:
        lines += _entry_points(r)
    lines += ["}  // namespace gems", ""]
    return "\n".join(lines)


def generated_sources() -> dict:
    return {TABLES_HEADER: tables_header(), OPS_SOURCE: ops_source()}
