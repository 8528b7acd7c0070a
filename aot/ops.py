"""Op declarations: the gems:: schemas and the aten overloads each family overrides.

Each family module (aot/family_*.py) declares GRIDS (its kernel variants), GEMS_OPS (schemas of
torch.ops.gems.*) and ATEN_OVERRIDES (aten overloads whose CUDA kernel `enable()` replaces), and
optionally generated_sources() (C++ and other files the family generates into the build folder)
and bench_cases() (the calls `python -m gems_aot bench` measures, see `bench_case`; the build
embeds them in the extension). The codegen writes the prototypes of the family's C++ functions
from those schemas (aot/schemas.py) to `gems_<family>_ops.h` in the build folder, which the
family's driver includes; a declaration without its C++ function fails to link.

C++ naming: op "add.Tensor" -> function `add_Tensor`; gems ops live in `gems::cuda::` (CUDA
kernel) and `gems::meta::` (Meta kernel); aten overrides in `gems::aten_impl::`.
"""

from __future__ import annotations

import dataclasses
import importlib

FAMILIES = (
    "aot.family_pointwise",
    "aot.family_reduce",
    "aot.family_rowwise",
    "aot.family_loss",
    "aot.family_gemm",
    "aot.family_gemv",
    "aot.family_fused",
    "aot.family_multi_tensor",
    "aot.family_index",
)


def cpp_name(op_name: str) -> str:
    return op_name.replace(".", "_")


def header_name(module: str) -> str:
    """The generated header of a family: aot.family_gemm -> gems_gemm_ops.h."""
    return f"gems_{module.rsplit('.', 1)[1].removeprefix('family_')}_ops.h"


@dataclasses.dataclass(frozen=True)
class T:
    """A tensor argument of an Example: its shape and dtype ("fp32", "i64", ...). Its dims are
    symbolic when traced, but for those in `static`: a size an int argument repeats (a norm's
    normalized_shape), which the op compares with it."""
    shape: tuple
    dtype: str = "fp32"
    static: tuple = ()


@dataclasses.dataclass(frozen=True)
class Example:
    """A valid call of a gems op (tensors as T, lists as tuples): the tests trace every op on it
    with symbolic sizes and compare with its results at other sizes."""
    args: tuple
    kwargs: tuple = ()  # (name, value) pairs


@dataclasses.dataclass(frozen=True)
class GemsOp:
    schema: str  # "add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor"
    # The aten op of the same name and semantics (its schema the same up to int / SymInt) gives
    # the output's shape, dtype and strides: no C++ Meta kernel; gems_aot registers the aten op as
    # its fake implementation at load (the build's _aten_fakes() lists them). torch's fake
    # implementations trace with symbolic shapes (torch.compile(dynamic=True), torch.export);
    # a C++ Meta kernel that reads sizes() or size(d) specialises every dim of that tensor.
    meta_from_aten: bool = False
    example: Example | None = None

    @property
    def name(self) -> str:
        return self.schema.split("(", 1)[0]

    @property
    def cpp(self) -> str:
        return cpp_name(self.name)


@dataclasses.dataclass(frozen=True)
class AtenOverride:
    name: str  # "add.Tensor", "add_.Tensor", "add.out", "relu"
    # Measured slower than ATen's kernel: `enable()` installs it only where `include` names it, so
    # that enabling gems never makes a program slower.
    opt_in: bool = False

    @property
    def cpp(self) -> str:
        return cpp_name(self.name)


@dataclasses.dataclass(frozen=True)
class Family:
    module: str
    grids: tuple
    gems_ops: tuple
    aten_overrides: tuple
    cpp_header: str
    generated_sources: object = None  # () -> {file name: text} written to the build folder
    bench_cases: object = None  # () -> [bench case]


def families(modules=FAMILIES) -> list:
    out = []
    for m in modules:
        mod = importlib.import_module(m)
        out.append(Family(m, tuple(mod.GRIDS), tuple(mod.GEMS_OPS), tuple(mod.ATEN_OVERRIDES), header_name(m),
                          getattr(mod, "generated_sources", None), getattr(mod, "bench_cases", None)))
    grids = [g.name for f in out for g in f.grids]
    ops = [o.name for f in out for o in f.gems_ops]
    overrides = [o.name for f in out for o in f.aten_overrides]
    for what, names in (("grid", grids), ("gems op", ops), ("aten override", overrides)):
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate {what} names: {dup}")
    return out


# How a benchmark case's inputs are shaped for a size of n elements (python -m gems_aot bench):
# elementwise: every input (n,); rows: one (n / cols, cols) input reduced over dim 1; matmul:
# (n, n) @ (n, n) with n the matrix size; act_and_mul: one (n / 2H, 2H) input; matvec: a
# (n / K, K) matrix and a (K,) vector; dot: two (n,) vectors; rowwise: every input (rows, n / rows)
# normalised along dim 1, 4096 rows at the large sizes (so the size picks the row length);
# rowwise_reduce: one such input reduced along dim 1 (--sizes 131072000: 4096 rows of 32000 logits);
# full: one (n,) input reduced to one element; loss:
# inputs by role (each call's "roles": a (rows, classes) input, int64 targets, one-element
# gradients), the class count a vocabulary dividing the size (aot/family_loss.py bench_cases); norm:
# rows x hidden, normalised over hidden, each input by its role (NORM_ROLES), 4096 rows at the
# large sizes unless the size names both ("16384x4096"; a case's own `sizes` are such names);
# embedding: tokens x hidden as norm's, a table of the case's "vocab" rows, inputs by role
# (aot/family_index.py bench_cases).
BENCH_KINDS = ("elementwise", "rows", "matmul", "act_and_mul", "matvec", "dot", "rowwise", "rowwise_reduce", "full",
               "rotary", "loss", "norm", "embedding")
# A norm case's inputs: "x" (rows, hidden) of the call's dtype, "vec" (hidden,) of the call's
# dtype (weight, bias), "stat" (rows, 1) fp32 (a saved mean or rstd).
NORM_ROLES = ("x", "vec", "stat")


def bench_case(op: str, call: str, family: str, kind: str, dtypes, inputs: int = 1, out=None, kwargs=None,
               extra_args=(), dtype_arg: bool = False, roles=None, args=None, writes=(), sizes=()) -> dict:
    """A benchmark case of an op whose inputs all share the call's dtype. call: the aten overload
    ("sum.dim_IntList") or the gems op ("gems::silu_and_mul"). out: the result dtype per input
    dtype (default: the same). extra_args: literal arguments after the inputs; dtype_arg: then the
    call's dtype as a ScalarType argument (a softmax backward's input_dtype).

    norm cases: roles, one of NORM_ROLES per input (its shape and dtype); args, the call's
    arguments in order, each {"tensor": i}, {"hidden": 1} (the list [hidden]) or {"value": v};
    writes, the roles of the results beyond the first (their bytes count as work); sizes, the
    shapes measured by default ("4096x1024")."""
    if kind not in BENCH_KINDS:
        raise ValueError(f"{op}: unknown bench kind {kind!r}")
    roles = tuple(roles or ("x",) * inputs)
    if len(roles) != inputs or not set(roles) <= set(NORM_ROLES) or not set(writes) <= set(NORM_ROLES):
        raise ValueError(f"{op}: roles {roles} and writes {writes} must name {inputs} inputs of {NORM_ROLES}")
    if args is None:
        args = [{"tensor": i} for i in range(inputs)] + [{"value": v} for v in extra_args]
    calls = {dt: {"tensors": ["fp32" if r == "stat" else dt for r in roles],
                  "args": list(args) + ([{"dtype": dt}] if dtype_arg else []),
                  "kwargs": dict(kwargs or {}), "reads": list(range(inputs)), "out": out(dt) if out else dt}
             for dt in dtypes}
    case = {"op": op, "call": call, "family": family, "kind": kind, "calls": calls}
    if kind == "norm":
        case.update(roles=list(roles), writes=list(writes), sizes=list(sizes))
    return case
