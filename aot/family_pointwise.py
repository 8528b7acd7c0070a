"""Pointwise family: the op declarations. The generator (aot/pointwise/) derives the kernels,
variants, C++ wrappers and registrations from them; the scalar functions are in
kernels/pointwise_math.py and the shared C++ driver in csrc/ops/pointwise.cpp.

Adding a pointwise op: a scalar function in kernels/pointwise_math.py, one PointwiseOp below,
and its aten overloads (`overloads(...)` finds the in-place and out= forms torch has).
"""

from aot.ops import header_name
from aot.pointwise import Overload, PointwiseOp, check_declarations, cpp_sources, grid, load_module, registrations
from aot.pointwise import rules

from aot.variants import DTYPES


FLOATS = ("fp32", "fp16", "bf16")
INTS = ("i32", "i64")
NUMBERS = FLOATS + INTS
BITS = INTS + ("bool",)
CAST = NUMBERS + ("bool",)  # copy_'s source and destination dtypes
TENSOR_SCALAR = ("tt", "ts")  # ops whose scalar operand only comes second (x < 2, x & 1)

# (case, exponent, dtypes) of pow(Tensor, Scalar) that ATen's kernel computes without pow.
POW_CASES = (("sqrt", 0.5, FLOATS), ("square", 2, NUMBERS), ("cube", 3, NUMBERS), ("rsqrt", -0.5, FLOATS),
             ("reciprocal", -1, FLOATS), ("inv_square", -2, FLOATS))

OPS = [
    # Same dtype in and out (TensorIterator::unary_op).
    *(PointwiseOp(n, n, 1, "unary_op", NUMBERS) for n in ("abs", "neg", "sign", "relu")),
    *(PointwiseOp(n, n, 1, "unary_op", FLOATS) for n in ("floor", "ceil", "round", "trunc")),
    PointwiseOp("bitwise_not", "bitwise_not", 1, "unary_op", BITS),
    # Integer inputs promote to float (unary_float_op): integer variants are not built, ATen
    # serves them.
    *(
        PointwiseOp(n, n, 1, "unary_float_op", FLOATS)
        for n in ("exp", "exp2", "expm1", "log", "log1p", "log2", "log10", "sqrt", "rsqrt", "reciprocal",
                  "sin", "cos", "tan", "tanh", "sigmoid", "erf")
    ),
    # Activations.
    PointwiseOp("gelu", "gelu", 1, "unary_op", FLOATS, consts=(("APPROXIMATE", "none"),)),
    PointwiseOp("gelu_tanh", "gelu", 1, "unary_op", FLOATS, consts=(("APPROXIMATE", "tanh"),)),
    *(PointwiseOp(n, n, 1, "unary_op", FLOATS) for n in ("silu", "mish", "hardswish", "hardsigmoid")),
    PointwiseOp("leaky_relu", "leaky_relu", 1, "unary_op", FLOATS, num_params=1),
    PointwiseOp("elu", "elu", 1, "unary_op", FLOATS, num_params=3),
    PointwiseOp("softplus", "softplus", 1, "unary_op", FLOATS, num_params=2),
    # Binary arithmetic (binary_op: promote to the common dtype).
    PointwiseOp("mul", "mul", 2, "binary_op", NUMBERS + ("bool",)),  # bool: isfinite's decomposition
    PointwiseOp("add", "add", 2, "binary_op", NUMBERS, num_params=1, alpha=True),
    PointwiseOp("sub", "sub", 2, "binary_op", NUMBERS, num_params=1, alpha=True),
    PointwiseOp("div", "div", 2, "binary_float_op", FLOATS, consts=(("ROUNDING_MODE", "none"),),
                scalar_divisor_op="mul"),
    PointwiseOp("div_trunc", "div", 2, "binary_op", NUMBERS, consts=(("ROUNDING_MODE", "trunc"),)),
    # Floor division's fix-ups keep more live values per element: 4 elements per thread run
    # 1.05x (fp32) to 1.7x (bf16) faster than 8 or 16 (H100 sweep).
    PointwiseOp("div_floor", "div", 2, "binary_op", NUMBERS, consts=(("ROUNDING_MODE", "floor"),),
                contig_launch=(512, 4)),
    PointwiseOp("remainder", "remainder", 2, "binary_op", NUMBERS),
    *(PointwiseOp(n, n, 2, "binary_op", NUMBERS, forms=TENSOR_SCALAR) for n in ("maximum", "minimum")),
    *(PointwiseOp(n, n, 2, "binary_float_op", FLOATS) for n in ("atan2",)),
    PointwiseOp("hypot", "hypot", 2, "binary_op", FLOATS),
    *(PointwiseOp(n, n, 2, "binary_op", BITS, forms=TENSOR_SCALAR) for n in ("bitwise_and", "bitwise_or", "bitwise_xor")),
    *(PointwiseOp(n, n, 2, "binary_op", INTS, forms=TENSOR_SCALAR)
      for n in ("bitwise_left_shift", "bitwise_right_shift")),
    # pow: Tensor ** Tensor and the general Tensor ** Scalar; the exponents ATen computes
    # without pow are ops of their own.
    # bf16 pow is compute-bound on libdevice's pow: pow_bf16 is exact to bf16 and 1.2x faster.
    PointwiseOp("pow", "pow", 2, "binary_op", NUMBERS, dtype_fns=(("bf16", "pow_bf16"),)),
    *(PointwiseOp(f"pow_{case}", "pow_tensor_scalar", 2, "binary_op", dtypes, consts=(("CASE", case),), forms=("ts",))
      for case, _, dtypes in POW_CASES),
    # Backward ops (binary_op over grad and the saved input or output).
    PointwiseOp("gelu_backward", "gelu_backward", 2, "binary_op", FLOATS, consts=(("APPROXIMATE", "none"),),
                forms=("tt",)),
    PointwiseOp("gelu_backward_tanh", "gelu_backward", 2, "binary_op", FLOATS, consts=(("APPROXIMATE", "tanh"),),
                forms=("tt",)),
    *(PointwiseOp(n, n, 2, "binary_op", FLOATS, forms=("tt",))
      for n in ("silu_backward", "sigmoid_backward", "tanh_backward")),
    PointwiseOp("threshold", "threshold", 1, "threshold_op", NUMBERS, num_params=2),
    PointwiseOp("threshold_backward", "threshold_backward", 2, "binary_op", FLOATS, num_params=1, forms=("tt",)),
    # Bounds and replacements (unary_op with scalar parameters).
    PointwiseOp("clamp", "clamp", 1, "unary_op", NUMBERS, num_params=2),
    PointwiseOp("clamp_min", "clamp_min", 1, "unary_op", NUMBERS, num_params=1),
    PointwiseOp("clamp_max", "clamp_max", 1, "unary_op", NUMBERS, num_params=1),
    # clamp.Tensor: a missing bound is a Python scalar at the dtype's extreme.
    PointwiseOp("clamp_tensor", "clamp", 3, "clamp_op", NUMBERS, forms=("ttt", "tts", "tst")),
    PointwiseOp("nan_to_num", "nan_to_num", 1, "unary_op", FLOATS, num_params=3),
    PointwiseOp("lerp", "lerp", 2, "binary_op", FLOATS, num_params=1, forms=("tt",)),
    # Bool out from any dtype.
    *(PointwiseOp(n, n, 1, "unary_bool_op", NUMBERS + ("bool",)) for n in ("logical_not",)),
    *(PointwiseOp(n, n, 1, "unary_bool_op", NUMBERS) for n in ("isnan", "isinf")),
    # Two results: mantissa and int32 exponent.
    PointwiseOp("frexp", "frexp", 1, "frexp_op", FLOATS, extra_results=("i32",)),
    # Three operands.
    PointwiseOp("addcmul", "addcmul", 3, "ternary_op", NUMBERS, num_params=1),
    PointwiseOp("addcdiv", "addcdiv", 3, "ternary_op", FLOATS, num_params=1),
    PointwiseOp("lerp_tensor", "lerp", 3, "ternary_op", FLOATS),
    PointwiseOp("where", "where", 3, "where_op", NUMBERS + ("bool",), operand_dtypes=("bool", "", ""),
                forms=("ttt", "tts", "tst")),
    # copy_: one op per destination dtype, compiled for every source dtype. c10 converts integers
    # to fp16 / bf16 through float.
    *(PointwiseOp(f"copy_to_{d}", "to_fp32" if d in ("fp16", "bf16") else "copy", 1, "copy_op", CAST, result_dtype=d)
      for d in CAST),
    # In place: fill_ and masked_fill_ (ATen's own configurations).
    PointwiseOp("fill", "copy", 0, "nullary_op", NUMBERS + ("bool",), num_params=1),
    PointwiseOp("masked_fill", "masked_fill", 2, "masked_fill_op", NUMBERS + ("bool",), num_params=1,
                operand_dtypes=("", "bool"), forms=("tt",)),
    # Comparisons and logical ops: bool out (comparison_op).
    *(PointwiseOp(n, n, 2, "comparison_op", NUMBERS, forms=TENSOR_SCALAR) for n in ("eq", "ne", "lt", "le", "gt", "ge")),
    *(PointwiseOp(n, n, 2, "comparison_op", NUMBERS + ("bool",), forms=TENSOR_SCALAR)
      for n in ("logical_and", "logical_or", "logical_xor")),
]

SUB_CHECK = "at::native::sub_check(self, other);"
POW_CHECK = ('TORCH_CHECK(!(c10::isIntegralType(self.scalar_type(), true) && exponent.isIntegral(true) && '
             'exponent.toLong() < 0), "Integers to negative integer powers are not allowed.");')
# clamp's Tensor bounds: ATen's config takes no CPU scalars, so a bound on another device goes to
# ATen (which raises); a missing bound is the extreme of the dtype the others promote to.
CLAMP_TENSOR = dict(
    operands=("self", "min", "max"),
    defaults=(("min", "pointwise::no_lower_bound(at::result_type(self, *max))"),
              ("max", "pointwise::no_upper_bound(at::result_type(self, *min))")),
    check='TORCH_CHECK(min.has_value() || max.has_value(), "torch.clamp: At least one of \'min\' or \'max\' must not be None");',
    guard=(rules.OnSelfDevice("min", "max"),),
)

OVERLOADS = [
    *(ov for n in ("abs", "neg", "sign", "relu", "floor", "ceil", "round", "trunc", "bitwise_not", "exp", "exp2",
                   "expm1", "log", "log1p", "log2", "log10", "sqrt", "rsqrt", "reciprocal", "sin", "cos", "tan",
                   "tanh", "sigmoid", "erf", "silu", "mish", "hardswish", "hardsigmoid")
      for ov in Overload.family(n, n)),
    *Overload.family("gelu", "", select=("approximate", (("none", "gelu"), ("tanh", "gelu_tanh")))),
    *Overload.family("leaky_relu", "leaky_relu", params=("negative_slope",)),
    *Overload.family("elu", "elu", params=("alpha", "scale", "input_scale")),
    *Overload.family("softplus", "softplus", params=("beta", "threshold")),
    *Overload.family("add.Tensor", "add", operands=("self", "other"), params=("alpha",)),
    *Overload.family("sub.Tensor", "sub", operands=("self", "other"), params=("alpha",), check=SUB_CHECK),
    *Overload.family("mul.Tensor", "mul", operands=("self", "other")),
    *Overload.family("div.Tensor", "div", operands=("self", "other")),
    *Overload.family("div.Tensor_mode", "", operands=("self", "other"),
                     select=("rounding_mode", ((None, "div"), ("trunc", "div_trunc"), ("floor", "div_floor")))),
    Overload("add.Scalar", "add", operands=("self", "other"), params=("alpha",), override=False),
    Overload("sub.Scalar", "sub", operands=("self", "other"), params=("alpha",), check=SUB_CHECK, override=False),
    Overload("mul.Scalar", "mul", operands=("self", "other"), override=False),
    Overload("div.Scalar", "div", operands=("self", "other"), override=False),
    *Overload.family("floor_divide", "div_floor", operands=("self", "other")),
    *Overload.family("remainder.Tensor", "remainder", operands=("self", "other")),
    *(ov for n in ("maximum", "minimum", "atan2", "hypot") for ov in Overload.family(n, n, operands=("self", "other"))),
    *(
        ov
        for n in ("bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_left_shift", "bitwise_right_shift")
        for ov in Overload.family(f"{n}.Tensor", n, operands=("self", "other"))
    ),
    *(
        ov
        for n in ("eq", "ne", "lt", "le", "gt", "ge")
        for suffix in ("Tensor", "Scalar")
        # In place, a comparison writes self's dtype: not a bool-output variant.
        for ov in Overload.family(f"{n}.{suffix}", n, operands=("self", "other"), inplace=False)
    ),
    *(ov for n in ("logical_and", "logical_or", "logical_xor") for ov in Overload.family(n, n, operands=("self", "other"))),
    *Overload.family("gelu_backward", "", operands=("grad_output", "self"),
                     select=("approximate", (("none", "gelu_backward"), ("tanh", "gelu_backward_tanh")))),
    *Overload.family("silu_backward", "silu_backward", operands=("grad_output", "self")),
    *Overload.family("sigmoid_backward", "sigmoid_backward", operands=("grad_output", "output")),
    *Overload.family("tanh_backward", "tanh_backward", operands=("grad_output", "output")),
    *Overload.family("threshold_backward", "threshold_backward", operands=("grad_output", "self"),
                     params=(rules.InSelfDtype("threshold"),)),
    *Overload.family("threshold", "threshold", params=(rules.InSelfDtype("threshold"), rules.InSelfDtype("value"))),
    *Overload.family("clamp", "clamp", params=(rules.BoundOrNone("min", side="lower"),
                                                rules.BoundOrNone("max", side="upper")),
                     guard=(rules.NotIntegerByFloat("min", "max"), rules.AnyGiven("min", "max"))),
    *Overload.family("clamp_min", "clamp_min", params=("min",), guard=(rules.NotIntegerByFloat("min"),)),
    *Overload.family("clamp_max", "clamp_max", params=("max",), guard=(rules.NotIntegerByFloat("max"),)),
    *Overload.family("clamp.Tensor", "clamp_tensor", **CLAMP_TENSOR),
    *Overload.family("clamp_min.Tensor", "maximum", operands=("self", "min"), guard=(rules.OnSelfDevice("min"),)),
    *Overload.family("clamp_max.Tensor", "minimum", operands=("self", "max"), guard=(rules.OnSelfDevice("max"),)),
    *Overload.family("nan_to_num", "nan_to_num", params=(
        rules.ValueOr("nan", default="0.0"), rules.FiniteOr("posinf", extreme="max"),
        rules.FiniteOr("neginf", extreme="min"))),
    *Overload.family("lerp.Scalar", "lerp", operands=("self", "end"), params=("weight",)),
    *Overload.family("lerp.Tensor", "lerp_tensor", operands=("self", "end", "weight")),
    *Overload.family("logical_not", "logical_not"),
    *Overload.family("isnan", "isnan"),
    # frexp.Tensor (composite) allocates both results and calls this; a result of another dtype
    # goes to ATen, which raises.
    Overload("frexp.Tensor_out", "frexp", gems=False,
             guard=(rules.Floating("self"), rules.SameDtype("mantissa", "self"),
                    rules.DtypeIs("exponent", dtype="at::kInt"))),
    # isinf is CompositeExplicitAutograd (abs, then eq): one kernel at the CUDA key instead.
    *(Overload(n, "isinf", gems=n == "isinf", out_shape="self.sizes()") for n in ("isinf", "isinf.out")),
    # copy_ (CompositeExplicitAutograd: x.to(dtype), clone and contiguous reach it too), by self's dtype.
    Overload("copy_", "", operands=("src",), gems=False, guard=(rules.PlainCopy("self", "src"),),
             select=(None, tuple((f"self.scalar_type() == c10::ScalarType::{DTYPES[d][1]}", f"copy_to_{d}")
                                 for d in CAST))),
    *Overload.family("addcmul", "addcmul", operands=("self", "tensor1", "tensor2"), params=("value",)),
    *Overload.family("addcdiv", "addcdiv", operands=("self", "tensor1", "tensor2"), params=("value",)),
    *Overload.family("where.self", "where", operands=("condition", "self", "other")),
    *Overload.family("pow.Tensor_Tensor", "pow", operands=("self", "exponent")),
    Overload("pow_.Tensor", "pow", operands=("self", "exponent"), gems=False),  # not named pow_.Tensor_Tensor
    # Scalar ** Tensor: ATen's output is contiguous, in the dtype the two promote to.
    *Overload.family("pow.Scalar", "pow", operands=("self", "exponent"), out_shape="exponent.sizes()",
                     result="at::empty(exponent.sizes(), exponent.options().dtype(at::result_type(self, exponent)))"),
    # ATen raises when the value does not fit self's dtype; an expanded self gets ATen's warning.
    Overload("fill_.Scalar", "fill", operands=(), params=("value",), gems=False,
             check="pointwise::check_fits(value, self.scalar_type());"),
    Overload("masked_fill_.Scalar", "masked_fill", operands=("self", "mask"), params=("value",), gems=False,
             check="pointwise::check_fits(value, self.scalar_type());",
             guard=(rules.NoInternalOverlap("self"),)),
    *(
        Overload(name, "", operands=("self", "exponent"), check=POW_CHECK, gems=name == "pow.Tensor_Scalar",
                 select=(None, tuple((f"exponent.equal({e})", f"pow_{case}") for case, e, _ in POW_CASES)
                         + (("true", "pow"),)))
        for name in ("pow.Tensor_Scalar", "pow_.Scalar", "pow.Tensor_Scalar_out")
    ),
]

check_declarations(OPS, OVERLOADS)
# The variants name kernels of the generated module: importing the family registers it.
load_module(OPS)
GRIDS = [grid(op) for op in OPS]
GEMS_OPS, ATEN_OVERRIDES = registrations(OVERLOADS)


def generated_sources() -> dict:
    return cpp_sources(OPS, OVERLOADS, header_name(__name__))


def bench_cases() -> list:
    from aot.pointwise import calls  # it reads this module's declarations

    return calls.bench_cases()
