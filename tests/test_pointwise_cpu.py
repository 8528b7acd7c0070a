"""The generated pointwise kernels in interpreter mode against torch on the CPU, and what the
generator derives from the declarations (variants, C++ wrappers, registrations).

Each kernel is called with the arguments csrc/ops/pointwise.cpp passes: tensor pointers (or a
value for a Python-scalar operand), the output, n, the operand scalars and params in opmath,
and for the strided layouts the collapsed sizes and element strides, fastest dim last.
"""

import functools
import os

import numpy
import pytest
import torch
import triton
import triton.language as tl
from triton.runtime import interpreter

from aot import family_pointwise as fam
from aot import ops, pointwise, schemas
from aot.pointwise import rules
from aot.pointwise.declarations import STRIDED_DIMS
from conftest import interpreted_math, libdevice_by_torch

from pointwise_cases import (OPS, TORCH, call_kwargs, reference_overload, kernel_params, operand_dtype, sample,
                             scalar_operand)

RTOL = {torch.float32: 1.3e-6, torch.float16: 1e-3, torch.bfloat16: 1.6e-2}
OLD_INTERPRETER = tuple(int(v) for v in triton.__version__.split(".")[:2]) < (3, 7)
DTYPE_NAMES = {v: k for k, v in TORCH.items()}
BLOCK = 64  # small blocks keep the interpreter fast; the math does not depend on the size


@functools.lru_cache(maxsize=None)
def generated():
    math = interpreted_math()
    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        return pointwise.load_module(fam.OPS, math_module=math, name="_interpreted_gems_pointwise")
    finally:
        if previous is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = previous


def reference(op, operands, dtype, out):
    """torch on float64 (for floats) through the op's functional aten overload, or in place on a
    copy (of a tensor like `out` when self is no operand)."""
    if op.builder == "copy_op":
        return operands[0].to(out.dtype)  # ATen's CPU cast
    ov = reference_overload(op.name)
    base, _, name = ov.aten.partition(".")
    fn = getattr(getattr(torch.ops.aten, base), name or "default")
    if op.extra_results:  # several results: into new tensors of their dtypes (exact ops only)
        written = [a.name for a in schemas.aten_schema(ov.aten).arguments if a.alias_info and a.alias_info.is_write]
        results = {w: torch.empty(0, dtype=TORCH[d]) for w, d in zip(written, op.result_dtypes(DTYPE_NAMES[dtype]))}
        return fn(*operands, **results)
    wide = [o.double() if o.is_floating_point() else o.clone() for o in operands]
    if schemas.overload_kind(schemas.aten_schema(ov.aten)) == "inplace" and "self" not in ov.operands:
        return fn(torch.zeros_like(out, dtype=torch.float64 if out.is_floating_point() else out.dtype),
                  **call_kwargs(ov, op.name, dtype))
    types_ = {a.name: str(a.type) for a in schemas.aten_schema(ov.aten).arguments}
    wide = [w.item() if types_[a] == "number" else w for a, w in zip(ov.operands, wide)]
    return fn(*wide, **call_kwargs(ov, op.name, dtype))


def params_for(op, dtype):
    return kernel_params(reference_overload(op.name), op.name, dtype)


def opmath(values, dtype):
    """Python floats as fp32 (or fp64) and ints of int64 ops as int64 interpreter scalars, as the
    compiled kernel receives them (the interpreter would pass a bare float, or an int as int32)."""
    np_type, tl_type = (numpy.float64, tl.float64) if dtype == torch.float64 else (numpy.float32, tl.float32)
    typed = {float: (np_type, tl_type)}
    if dtype == torch.int64:
        typed[int] = (numpy.int64, tl.int64)
    return [tl.tensor(interpreter.TensorHandle(numpy.array([v], dtype=typed[type(v)][0]), typed[type(v)][1]),
                      typed[type(v)][1]) if type(v) in typed else v for v in values]


def run_contig(op, dtype_name, form, operands, out, index64=False):
    """out: the result tensor, or a list of them for an op of several results."""
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    k = getattr(generated(), pointwise.kernel_name(op, dtype_name, "contig"))
    dtype = TORCH[dtype_name]
    ptrs = [o if isinstance(o, torch.Tensor) else outs[0] for o in operands]
    scalars = opmath([0 if isinstance(o, torch.Tensor) else o for o in operands], dtype)
    flags = {f"S{i}": c == "s" for i, c in enumerate(form)}
    n = outs[0].numel()
    with libdevice_by_torch():
        k[(-(-n // BLOCK),)](*ptrs, *outs, n, *scalars, *opmath(params_for(op, dtype), dtype), **flags,
                             INDEX64=index64, BLOCK=BLOCK)


def element_strides(t, dims, shape):
    """t's element strides broadcast to `shape`, padded to `dims` leading dims."""
    t = t.expand(shape) if isinstance(t, torch.Tensor) else None
    strides = list(t.stride()) if t is not None else [0] * len(shape)
    return [0] * (dims - len(shape)) + strides


def int_divider(d):
    """(magic, shift) of the driver's division by d (csrc/ops/pointwise.cpp int_divider, after
    ATen's IntDivider): n // d == (umulhi(n, magic) + n) >> shift for 0 <= n < 2**31."""
    shift = max(d - 1, 0).bit_length()
    return (2**32 * (2**shift - d)) // d + 1, shift


def test_int_divider_divides_exactly():
    rng = numpy.random.default_rng(0)
    ns = numpy.concatenate([numpy.arange(4096), rng.integers(0, 2**31, 4096), [2**31 - 1]]).astype(numpy.uint64)
    for d in [1, 2, 3, 5, 7, 10, 17, 255, 4096, 4097, 12345, 65537, 2**20 + 3, 2**30 + 1, 2**31 - 1, 2**31]:
        magic, shift = int_divider(d)
        assert 0 < magic < 2**32
        quotient = (((ns * numpy.uint64(magic)) >> numpy.uint64(32)) + ns) >> numpy.uint64(shift)
        assert numpy.array_equal(quotient, ns // numpy.uint64(d)), d


def run_strided(op, dtype_name, layout, operands, out):
    """out: the result tensor, or a list of them for an op of several results."""
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    k = getattr(generated(), pointwise.kernel_name(op, dtype_name, layout))
    dims = STRIDED_DIMS[layout]
    dtype = TORCH[dtype_name]
    shape = outs[0].shape
    sizes = [1] * (dims - len(shape)) + list(shape)
    # Each size after the outermost comes with its divider (a u32 magic number and a shift).
    size_args = [v for s in sizes[1:] for v in (s, *int_divider(s))]
    ptrs = [o if isinstance(o, torch.Tensor) else outs[0] for o in operands]
    scalars = opmath([0 if isinstance(o, torch.Tensor) else o for o in operands], dtype)
    strides = []
    for t in list(operands) + outs:
        strides += element_strides(t, dims, shape)
    flags = {f"S{i}": not isinstance(o, torch.Tensor) for i, o in enumerate(operands)}
    n = outs[0].numel()
    with libdevice_by_torch():
        k[(-(-n // BLOCK),)](*ptrs, *outs, n, *scalars, *opmath(params_for(op, dtype), dtype), *size_args,
                             *strides, **flags, BLOCK=BLOCK)


def check(res, ref, op):
    ref = ref.to(res.dtype)
    if res.dtype.is_floating_point:
        torch.testing.assert_close(res, ref, rtol=RTOL[res.dtype], atol=1e-4, equal_nan=True, msg=op.name)
    else:
        assert torch.equal(res, ref), (op.name, res, ref)


def cases():
    for op in fam.OPS:
        for dtype_name in op.dtypes:
            yield pytest.param(op.name, dtype_name, id=f"{op.name}-{dtype_name}")


@pytest.mark.parametrize("name,dtype_name", cases())
def test_contig_every_form(name, dtype_name, seeded):
    op = OPS[name]
    dtype = TORCH[dtype_name]
    if dtype == torch.bool and OLD_INTERPRETER:
        pytest.skip("bool operands fail under triton 3.6's interpreter (seen on the GPU box); the GPU suite runs them")
    n = 2 * BLOCK + 11  # full blocks and a ragged tail
    for form in op.forms:
        if op.fn.startswith("logical_") and "s" in form and dtype.is_floating_point:
            continue  # the interpreter cannot `&` the bool of an fp32 scalar argument; the GPU suite runs it
        operands = [sample(op, operand_dtype(op, i, dtype_name), (n,), i, gen=seeded) if c == "t"
                    else scalar_operand(name, dtype) for i, c in enumerate(form)]
        ref_operands = [o if isinstance(o, torch.Tensor) else torch.tensor(o, dtype=operand_dtype(op, i, dtype_name))
                        for i, o in enumerate(operands)]
        if op.extra_results:
            outs = [torch.full((n,), 99, dtype=TORCH[d]) for d in op.result_dtypes(dtype_name)]  # poisoned
            run_contig(op, dtype_name, form, operands, outs)
            for res, ref in zip(outs, reference(op, ref_operands, dtype, outs[0])):
                check(res, ref, op)
            continue
        out_dtype = TORCH[op.out_dtype(dtype_name)]
        out = torch.full((n,), 1 if out_dtype == torch.bool else 99, dtype=out_dtype)  # poisoned
        run_contig(op, dtype_name, form, operands, out)
        if out_dtype == torch.bool:
            out2 = torch.zeros((n,), dtype=torch.bool)  # a second poison: every element is written
            run_contig(op, dtype_name, form, operands, out2)
            assert torch.equal(out, out2), name
        check(out, reference(op, ref_operands, dtype, out), op)


@pytest.mark.parametrize("layout", ["strided3", "strided8"])
@pytest.mark.parametrize("name", ["add", "div_floor", "gelu_tanh", "leaky_relu", "lt", "bitwise_xor", "elu"])
def test_strided_broadcast_and_transposed(name, layout, seeded):
    op = OPS[name]
    dtype_name = "i64" if name == "bitwise_xor" else "bf16" if name == "gelu_tanh" else "fp32"
    dtype = TORCH[dtype_name]
    shape = (3, 5, 4) if layout == "strided3" else (2, 3, 1, 2, 5, 4)
    x = sample(op, dtype, tuple(reversed(shape)), 0, gen=seeded).permute(*reversed(range(len(shape))))  # transposed
    operands = [x]
    if op.arity == 2:
        operands.append(sample(op, dtype, shape[-1:], 1, gen=seeded))  # broadcast: stride 0 on leading dims
    out = torch.full(shape, 1 if op.out_dtype(dtype_name) == "bool" else 99, dtype=TORCH[op.out_dtype(dtype_name)])
    run_strided(op, dtype_name, layout, operands, out)
    check(out, reference(op, operands, dtype, out), op)


def test_strided_python_scalar_operand(seeded):
    op = OPS["sub"]
    x = sample(op, torch.float32, (4, 6), 0, gen=seeded).t()
    out = torch.full((6, 4), 99.0)
    run_strided(op, "fp32", "strided3", [-1.75, x], out)
    check(out, torch.sub(torch.tensor(-1.75, dtype=torch.float64), x.double(), alpha=0.5), op)


def test_contig_64bit_index_variant(seeded):
    op = OPS["mul"]
    x, y = sample(op, torch.float32, (100,), 0, gen=seeded), sample(op, torch.float32, (100,), 1, gen=seeded)
    out = torch.full((100,), 99.0)
    run_contig(op, "fp32", "tt", [x, y], out, index64=True)
    check(out, x.double() * y.double(), op)


# ---- declarations and what the generator derives ----------------------------------------------


def test_declared_functions_exist_and_names_are_unique():
    math = interpreted_math()
    assert len(OPS) == len(fam.OPS)
    for op in fam.OPS:
        assert hasattr(math, op.fn), op.name
    assert len({g.name for g in fam.GRIDS}) == len(fam.GRIDS)


def test_variant_signatures():
    op = OPS["add"]
    g = pointwise.grid(op)
    v = g.make({"dtype": "bf16", "form": "ts", "layout": "contig"}, 90)
    assert v.runtime_args == (("in0", "*bf16"), ("in1", "*bf16"), ("out", "*bf16"), ("n", "i32"),
                              ("sc0", "fp32"), ("sc1", "fp32"), ("p0", "fp32"))
    assert dict(v.constexprs) == {"S0": False, "S1": True, "INDEX64": False, "BLOCK": 2048}
    assert v.num_warps == 4  # 16 bf16 elements per thread; 8 for 32-bit dtypes
    assert g.make({"dtype": "fp32", "form": "tt", "layout": "contig"}, 90).num_warps == 8
    floor = pointwise.grid(OPS["div_floor"]).make({"dtype": "fp32", "form": "tt", "layout": "contig"}, 90)
    assert (dict(floor.constexprs)["BLOCK"], floor.num_warps) == (512, 4)  # its declared launch shape
    assert set(v.divisible16) == {"in0", "out"}  # the scalar operand's pointer is not dereferenced
    v = g.make({"dtype": "i64", "form": "tt", "layout": "contig64"}, 90)
    assert ("n", "i64") in v.runtime_args and ("p0", "i64") in v.runtime_args
    v = g.make({"dtype": "fp32", "form": "tt", "layout": "strided8"}, 90)
    names = [n for n, _ in v.runtime_args]
    assert names[7:28] == [f"{a}{d}" for d in range(1, 8) for a in ("size", "mag", "sh")]
    assert len(names) == 7 + 3 * 7 + 3 * 8
    assert dict(v.runtime_args)["mag1"] == "u32"
    assert v.divisible16 == ()
    eq = pointwise.grid(OPS["eq"]).make({"dtype": "fp16", "form": "tt", "layout": "contig"}, 90)
    assert ("out", "*i1") in eq.runtime_args


def test_overloads_follow_torch():
    names = {o.name for o in fam.ATEN_OVERRIDES}
    assert {"add.Tensor", "add_.Tensor", "add.out", "div.out_mode", "exp_", "gelu.out", "eq.Scalar_out"} <= names
    # No CUDA kernel in ATen (composite): served as gems ops only.
    assert not {"add.Scalar", "logical_and", "eq_.Tensor"} & names
    gems = {o.name for o in fam.GEMS_OPS}
    assert {"add.Scalar", "logical_and", "gelu", "div.Tensor_mode", "leaky_relu"} <= gems
    assert not {n for n in gems if n.endswith("_") or ".out" in n or n.endswith("_out")}


def test_generated_cpp_wrappers():
    src = fam.generated_sources()
    cpp = src["family_pointwise_ops.cpp"]
    header = schemas.family_header(fam.__name__, fam.GEMS_OPS, fam.ATEN_OVERRIDES)
    assert f'#include "{ops.header_name(fam.__name__)}"' in cpp
    assert ("at::Tensor div_Tensor_mode(const at::Tensor& self, const at::Tensor& other, "
            "std::optional<c10::string_view> rounding_mode);") in header
    assert 'if (rounding_mode.has_value() && *rounding_mode == "floor") op = &kOp_div_floor;' in cpp
    assert "return at::cuda::div_outf(self, other, rounding_mode, out);" in cpp
    assert "const at::Tensor other_t = at::native::wrapped_scalar_tensor(other);" in cpp  # eq.Scalar
    assert "at::native::sub_check(self, other);" in cpp
    assert 'kOp_div{"div", pointwise::Builder::k_binary_float_op, 2, 0, &gen::pw_div::dtype_of, ' in cpp
    assert "&kOp_mul, false, 1, kResultDtypes_div};" in cpp  # div's tensor / scalar form runs as mul by the reciprocal
    # Several results: the out= overload returns both, through run_results.
    assert ("std::tuple<at::Tensor&, at::Tensor&> frexp_Tensor_out(const at::Tensor& self, at::Tensor& mantissa, "
            "at::Tensor& exponent);") in header
    assert "at::Tensor* results[] = {&mantissa, &exponent};" in cpp
    assert "constexpr c10::ScalarType kResultDtypes_frexp[] = {c10::ScalarType::Undefined, c10::ScalarType::Int};" in cpp
    assert src[f"{pointwise.GENERATED_MODULE}.py"] == pointwise.kernel_source(fam.OPS)


def test_dtype_coverage_is_decided_before_any_dtype_specific_code():
    """Every override asks pointwise::covers first: a dtype without kernels (complex, an integer
    for nan_to_num) goes to ATen before ATen's extra checks or the scalar params run (those raise
    "not implemented for 'ComplexFloat'" / "for 'Long'")."""
    cpp = fam.generated_sources()["family_pointwise_ops.cpp"]
    bodies = {}
    for ns in ("aten_impl", "cuda"):
        section = cpp[cpp.index(f"namespace {ns} {{"):cpp.index(f"}}  // namespace {ns}")]
        for chunk in section.split("\n}\n"):
            if "(" in chunk:
                bodies[(ns, chunk.strip().split("(")[0].split()[-1])] = chunk
    fill = bodies[("aten_impl", "fill__Scalar")]
    assert fill.index("pointwise::covers(*op, {nullptr}, self)") < fill.index("check_fits")
    assert "counter.hit(Fallback::kDtype); return at::cuda::fill_(self, value);" in fill
    out = bodies[("aten_impl", "nan_to_num_out")]
    assert out.index("pointwise::covers(*op, {&self}, out)") < out.index("finite_max")
    functional = bodies[("cuda", "nan_to_num")]
    assert functional.index("pointwise::covers(*op, {&self}, at::Tensor())") < functional.index("finite_max")
    assert 'unsupported("gems::nan_to_num", Fallback::kDtype' in functional
    # Before the wrapped scalars of absent optional bounds are made (they read the other bound).
    clamp = bodies[("aten_impl", "clamp_Tensor")]
    assert clamp.index("pointwise::covers(*op, {&self, min.has_value() ? &*min : nullptr, max.has_value() ? "
                       "&*max : nullptr}, at::Tensor())") < clamp.index("TORCH_CHECK") < clamp.index("min_t")
    assert all("pointwise::covers" in b for b in bodies.values())


def test_composite_overrides_fall_back_to_the_composite_kernel():
    """copy_ and isinf have no CUDA kernel in ATen: their overrides fall back to the
    CompositeExplicitAutograd one (which a CUDA-key registration would otherwise hide)."""
    names = {o.name for o in fam.ATEN_OVERRIDES}
    assert {"copy_", "isinf", "isinf.out", "threshold.out", "clamp.Tensor", "clamp_min_.Tensor"} <= names
    cpp = fam.generated_sources()["family_pointwise_ops.cpp"]
    assert "return at::compositeexplicitautograd::copy_(self, src, non_blocking);" in cpp
    assert "return at::compositeexplicitautograd::isinf_outf(self, out);" in cpp
    assert "#include <ATen/ops/copy_compositeexplicitautograd_dispatch.h>" in cpp
    assert "if (self.scalar_type() == c10::ScalarType::BFloat16) op = &kOp_copy_to_bf16;" in cpp
    assert ("const at::Tensor max_t = max.has_value() ? *max : at::native::wrapped_scalar_tensor("
            "pointwise::no_upper_bound(at::result_type(self, *min)));") in cpp
    assert "pointwise::in_dtype(threshold, self.scalar_type())" in cpp


def test_copy_variants_cast_to_the_result_dtype():
    op = OPS["copy_to_bf16"]
    assert (op.fn, op.dtypes) == ("to_fp32", fam.CAST)
    v = pointwise.grid(op).make({"dtype": "i64", "form": "t", "layout": "strided3"}, 90)
    assert v.runtime_args[:3] == (("in0", "*i64"), ("out", "*bf16"), ("n", "i32"))
    with pytest.raises(ValueError, match="result_dtype"):
        pointwise.PointwiseOp("x", "copy", 1, "copy_op", ("fp32",), result_dtype="fp8")


@pytest.mark.parametrize("src", ["i64", "i32", "bool"])
def test_integer_to_bf16_rounds_through_fp32(src):
    """c10 converts an integer to bf16 through float (two roundings); so must the kernel."""
    op = OPS["copy_to_bf16"]
    # 2**24 + 2**16 + 1 rounds to fp32's 2**24 + 2**16, a bf16 tie that goes to 2**24; rounded
    # once it would be 2**24 + 2**17.
    values = {"i64": [2**24 + 2**16 + 1, 2**40 + 2**32 + 1, -(2**24 + 2**16 + 1), 7],
              "i32": [2**24 + 2**16 + 1, 2**31 - 1, -5, 0], "bool": [True, False, True, True]}[src]
    x = torch.tensor(values, dtype=TORCH[src])
    out = torch.full((4,), float("nan"), dtype=torch.bfloat16)
    run_contig(op, src, "t", [x], out)
    assert torch.equal(out, x.to(torch.bfloat16)) and torch.equal(out, x.float().to(torch.bfloat16))


def test_bad_declarations_are_rejected():
    with pytest.raises(ValueError, match="builder"):
        pointwise.PointwiseOp("x", "exp", 2, "unary_op", ("fp32",))
    with pytest.raises(ValueError, match="dtypes"):
        pointwise.PointwiseOp("x", "exp", 1, "unary_op", ("fp8",))
    with pytest.raises(ValueError, match="forms"):
        pointwise.PointwiseOp("x", "add", 2, "binary_op", ("fp32",), forms=("ss",))
    with pytest.raises(ValueError, match="no function"):
        pointwise.check_declarations([pointwise.PointwiseOp("x", "no_such_fn", 1, "unary_op", ("fp32",))], [])
    with pytest.raises(ValueError, match="no such overload"):
        schemas.aten_schema("exp.no_such_overload")
    exp = [pointwise.PointwiseOp("exp", "exp", 1, "unary_op", ("fp32",))]
    for bad in (pointwise.Overload("exp", "exp", params=("alpha",)),
                pointwise.Overload("exp", "exp", guard=(rules.OnSelfDevice("other"),))):
        with pytest.raises(ValueError, match=r"exp: params or guard read \['(alpha|other)'\]"):
            pointwise.check_declarations(exp, [bad])


def test_rules_render_per_schema():
    """A rule reads an optional argument through its std::optional and a plain one directly."""
    clamp, clamp_min = schemas.aten_schema("clamp"), schemas.aten_schema("clamp_min")
    assert rules.NotIntegerByFloat("min", "max").cpp(clamp) == (
        "!(c10::isIntegralType(self.scalar_type(), true) && ((min && min->isFloatingPoint()) || "
        "(max && max->isFloatingPoint())))")
    assert rules.NotIntegerByFloat("min").cpp(clamp_min) == (
        "!(c10::isIntegralType(self.scalar_type(), true) && min.isFloatingPoint())")
    assert rules.OnSelfDevice("min", "max").cpp(schemas.aten_schema("clamp.Tensor")) == (
        "(!min.has_value() || min->device() == self.device()) && (!max.has_value() || max->device() == self.device())")
    assert rules.OnSelfDevice("min").cpp(schemas.aten_schema("clamp_min.Tensor")) == "min.device() == self.device()"
    assert rules.BoundOrNone("max", side="upper").cpp(clamp) == (
        "max.has_value() ? *max : pointwise::no_upper_bound(self.scalar_type())")
    assert rules.param_argument(rules.FiniteOr("posinf", extreme="max")) == "posinf"
    assert rules.param_argument("alpha") == "alpha"
    # Declarations compare and hash by kind, arguments and options.
    assert rules.ValueOr("nan", default="0.0") == rules.ValueOr("nan", default="0.0")
    assert rules.ValueOr("nan", default="0.0") != rules.ValueOr("nan", default="1.0")
    assert rules.Floating("self") != rules.AnyGiven("self")
    assert len({rules.InSelfDtype("value"), rules.InSelfDtype("value"), rules.InSelfDtype("threshold")}) == 2


@pytest.mark.parametrize("dtype_name", ["fp32", "bf16"])
def test_softplus_block_above_threshold_is_the_identity(dtype_name, seeded):
    """A block whose values are all above the threshold skips log1p(exp()), as ATen's threads do;
    the next block mixes both sides."""
    op = OPS["softplus"]
    dtype = TORCH[dtype_name]
    x = torch.cat([torch.rand(BLOCK, generator=seeded) + 0.5, torch.randn(BLOCK + 5, generator=seeded)]).to(dtype)
    out = torch.full_like(x, float("nan"))
    k = getattr(generated(), pointwise.kernel_name(op, dtype_name, "contig"))
    with libdevice_by_torch():
        k[(3,)](x, out, x.numel(), *opmath([0.0, 1.5, 0.25], dtype), S0=False, INDEX64=False, BLOCK=BLOCK)
    assert torch.equal(out[:BLOCK], x[:BLOCK])
    check(out, torch.nn.functional.softplus(x.double(), 1.5, 0.25), op)


def test_frexp_two_results_subnormals_and_strided(seeded):
    """frexp writes two results (mantissa in the input dtype, int32 exponent): subnormals, the
    specials and both layouts, exactly as torch."""
    op = OPS["frexp"]
    assert op.result_dtypes("fp16") == ["fp16", "i32"]
    values = [1e-40, -3e-45, 1.1754942e-38, 2.0**-149, 0.0, -0.0, float("inf"), -float("inf"), float("nan"),
              1.0, -0.75, 3e38, 6.5e-5, 12345.678]
    x = torch.cat([torch.tensor(values), torch.randn(BLOCK + 40, generator=seeded) * 1e3])
    outs = [torch.full_like(x, 99.0), torch.full(x.shape, 99, dtype=torch.int32)]
    run_contig(op, "fp32", "t", [x], outs)
    mantissa, exponent = torch.frexp(x)
    torch.testing.assert_close(outs[0], mantissa, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(outs[1], exponent)
    xt = (torch.randn(5, 6, generator=seeded) * 100).to(torch.float16).t()  # transposed fp16
    outs = [torch.full((6, 5), 99.0, dtype=torch.float16), torch.full((6, 5), 99, dtype=torch.int32)]
    run_strided(op, "fp16", "strided3", [xt], outs)
    mantissa, exponent = torch.frexp(xt)
    assert torch.equal(outs[0], mantissa) and torch.equal(outs[1], exponent)
