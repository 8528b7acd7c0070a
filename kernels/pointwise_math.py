"""Scalar math of the pointwise ops, one `@triton.jit` function per op, for the generated kernels.

A build-time generator wraps each function into load / compute / store kernels. Contract:
- Arguments, in order: the operand values, already in the compute type (fp32 for fp16/bf16 inputs,
  ATen's opmath; the input's own type for fp32, fp64, integers and bool); then the runtime scalar
  parameters, in the compute type too (ATen rounds them to opmath: `alpha.to<opmath_t>()`); then the
  `tl.constexpr` modes. The result is in the compute type (tl.int1 for predicates); the caller casts
  it to the output dtype.
- The formulas are ATen's CUDA kernels, operation for operation, so that NaN, +-inf and -0.0 land
  where torch puts them. Comparisons stand where ATen compares (`x < lo ? lo : x`), and
  tl.maximum / tl.minimum (PTX max/min, which ignore NaN) where ATen calls ::max / ::min. ATen's
  `a + alpha * b` (add, sub, addcmul, addcdiv, lerp) is one fma on CUDA, as nvcc contracts it, so
  these call tl.fma: an overflowing alpha * b still meets a (inf, not NaN, for inf - 1e39).

Precision: CUDA's `/` and sqrt round as IEEE, but Triton's fp32 `/` and tl.sqrt are approximate
(div.full, sqrt.approx), so fp32 uses tl.math.div_rn / tl.math.sqrt_rn (fp64 `/` and sqrt are
already IEEE). Transcendentals call libdevice, the library CUDA's own expf, log1pf, ... come from,
in fp32 and fp64 alike: tl.exp lowers to x * log2(e) and ex2.approx, whose error grows with |x|
(3e-6 relative at |x| = 50, beyond fp32's rtol of 1.3e-6), and Triton has no expm1, log1p, tan,
tanh, atan2, ... of its own. Triton links libdevice with flush-to-zero, so fp32 transcendentals
read and return subnormals as 0 where ATen keeps them (a difference below 1.2e-38).
"""

import triton
import triton.language as tl
from triton.language.extra import libdevice

_INF = tl.constexpr(float("inf"))
# The <math.h> constants ATen's GELU uses; products are formed in double, as in ATen's constexprs.
_M_SQRT1_2 = tl.constexpr(0.70710678118654752440)
_GELU_TANH_BETA = tl.constexpr(1.41421356237309504880 * 1.12837916709551257390 * 0.5)  # M_SQRT2 * M_2_SQRTPI / 2
_GELU_ERF_BETA = tl.constexpr(1.12837916709551257390 * 0.70710678118654752440 * 0.5)  # M_2_SQRTPI * M_SQRT1_2 / 2
_GELU_KAPPA = tl.constexpr(0.044715)


@triton.jit
def _div_rn(x, y):
    # IEEE-rounded x / y for fp32 and fp64 (see the module docstring).
    if y.dtype == tl.float32:
        q = tl.math.div_rn(x, y)
    else:
        q = x / y
    return q


@triton.jit
def _std_max(a, b):
    # std::max(a, b) = (a < b) ? b : a: keeps a NaN `a`, unlike PTX max.
    return tl.where(a < b, b, a)


@triton.jit
def _std_min(a, b):
    # std::min(a, b) = (b < a) ? b : a.
    return tl.where(b < a, b, a)


@triton.jit
def _sigmoid(x):
    return _div_rn(1, 1 + libdevice.exp(-x))


# ---------------------------------------------------------------------------------------------
# Arithmetic
# ---------------------------------------------------------------------------------------------


@triton.jit
def copy(x):
    return x


@triton.jit
def to_fp32(x):
    # c10 converts an integer to fp16 / bf16 through float: two roundings, as here (a direct
    # conversion rounds once and differs above 2**24). Floats arrive widened to fp32 already.
    return x.to(tl.float32)


@triton.jit
def add(x, y, alpha):
    if x.dtype.is_floating():
        r = tl.fma(alpha, y, x)
    elif x.dtype == tl.int1:
        # bool: ATen's `a + alpha * b` converted back to bool is an or (int1 `+` would wrap to 0).
        r = x | (y & (alpha != 0))
    else:
        r = x + alpha * y
    return r


@triton.jit
def sub(x, y, alpha):
    if x.dtype.is_floating():
        r = tl.fma(alpha * -1, y, x)  # ATen adds -alpha * y
    else:
        r = x - alpha * y
    return r


@triton.jit
def mul(x, y):
    return x * y


@triton.jit
def neg(x):
    if x.dtype.is_floating():
        r = x * -1  # a sign flip: triton 3.6 lowers a float `-x` to 0 - x, which keeps +0.0 positive
    else:
        r = -x
    return r


@triton.jit
def abs(x):
    # Integer abs wraps at the minimum like ATen's ::abs; bool and unsigned are returned as they are.
    return tl.abs(x)


@triton.jit
def reciprocal(x):
    return _div_rn(1, x)


@triton.jit
def addcmul(x, t1, t2, value):
    if x.dtype.is_floating():
        r = tl.fma(value, t1 * t2, x)
    else:
        r = x + value * (t1 * t2)
    return r


@triton.jit
def addcdiv(x, t1, t2, value):
    # Floating point only: ATen rejects integer addcdiv.
    return tl.fma(value, _div_rn(t1, t2), x)


@triton.jit
def lerp(x, end, weight):
    # ATen picks the formula by |weight| < 0.5 (not weight < 0.5).
    diff = end - x
    return tl.where(tl.abs(weight) < 0.5, tl.fma(weight, diff, x), tl.fma(diff * -1, 1 - weight, end))


# ---------------------------------------------------------------------------------------------
# Division, remainder, power
# ---------------------------------------------------------------------------------------------


@triton.jit
def _div_floor_float(x, y):
    # c10::div_floor_floating: Python's a // b from fmod, with its rounding fix-ups.
    mod = libdevice.fmod(x, y)
    quot = _div_rn(x - mod, y)
    quot = tl.where((mod != 0) & ((y < 0) != (mod < 0)), quot - 1, quot)
    floordiv = tl.floor(quot)
    floordiv = tl.where(quot - floordiv > 0.5, floordiv + 1, floordiv)
    # A zero quotient takes the sign of x / y; y == 0 gives the IEEE quotient.
    true_div = _div_rn(x, y)
    floordiv = tl.where(quot == 0, libdevice.copysign(quot, true_div), floordiv)
    return tl.where(y == 0, true_div, floordiv)


@triton.jit
def _div_floor_int(x, y):
    # c10::div_floor_integer: truncated quotient, one lower when the signs differ and there is a remainder.
    q = x // y
    return tl.where(((x < 0) != (y < 0)) & (x % y != 0), q - 1, q)


@triton.jit
def div(x, y, ROUNDING_MODE: tl.constexpr):
    """ROUNDING_MODE "none": true division, floating point only (ATen promotes integer inputs to
    float); "trunc" / "floor": floating point and integers (Python's floor division)."""
    if ROUNDING_MODE == "none":
        r = _div_rn(x, y)
    elif ROUNDING_MODE == "trunc":
        if x.dtype.is_floating():
            # fp16/bf16: ATen truncates the quotient rounded to the input dtype, this the fp32 one.
            r = libdevice.trunc(_div_rn(x, y))
        else:
            r = x // y  # Triton's integer `//` truncates, as C does
    else:
        tl.static_assert(ROUNDING_MODE == "floor", "ROUNDING_MODE is none, trunc or floor")
        if x.dtype.is_floating():
            r = _div_floor_float(x, y)
        else:
            r = _div_floor_int(x, y)
    return r


@triton.jit
def floor_divide(x, y):
    return div(x, y, "floor")


@triton.jit
def remainder(x, y):
    # Python's modulo: the result takes the divisor's sign. Floats from fmod, as ATen does.
    if x.dtype.is_floating():
        r = libdevice.fmod(x, y)
    else:
        r = x % y  # C remainder: the dividend's sign
    return tl.where((r != 0) & ((r < 0) != (y < 0)), r + y, r)


@triton.jit
def _powi(x, y):
    # ATen's powi: square-and-multiply over the exponent's bits, wrapping like ATen's integers.
    x, y = tl.broadcast(x, y)
    r = tl.full(x.shape, 1, x.dtype)
    base = x
    e = y
    for _ in range(x.dtype.primitive_bitwidth):
        r = tl.where((e & 1) != 0, r * base, r)
        base = base * base
        e = e >> 1
    if x.dtype.is_int_signed():
        # A negative exponent truncates 1 / x**-y: 1 for x == 1, +-1 for x == -1, else 0.
        r = tl.where(y < 0, tl.where(x == 1, 1, tl.where(x == -1, 1 - 2 * (y & 1), 0)), r)
    return r


@triton.jit
def pow(x, y):
    if x.dtype.is_floating():
        r = libdevice.pow(x, y)
    else:
        r = _powi(x, y)
    return r


@triton.jit
def pow_bf16(x, y):
    """pow for a bf16 result, from fp32 operands: exp2(y * log2|x|) on the approximate hardware
    log2 and exp2, where libdevice's pow makes bf16 pow compute-bound (0.82x ATen on an H100).
    A finite nonzero bf16 result has |y * log2|x|| < 134 with |log2|x|| >= log2(1 + 2**-7), so
    |y| < 12000 and lg2.approx's absolute error (2**-22.6) moves the result by under 0.35 bf16
    ulp. Signs and special values are C's pow."""
    r = libdevice.exp2(y * libdevice.fast_log2f(tl.abs(x)))
    y_int = tl.floor(y) == y  # +-inf count as (even) integers
    y_odd = (y - 2 * tl.floor(y * 0.5)) == 1  # exact below 2**24; larger floats are even
    # Nested selects, not `&`: the interpreter cannot `&` a scalar operand's predicate.
    negative = libdevice.copysign(tl.full(x.shape, 1.0, x.dtype), x) < 0  # -0.0 too
    r = tl.where(negative, tl.where(y_odd, r * -1, r), r)  # as neg(): triton 3.6's -r is 0 - r, +0.0 for 0.0
    r = tl.where((x < 0) & (x > -_INF), tl.where(y_int, r, float("nan")), r)
    r = tl.where(x == -1, tl.where(tl.abs(y) == _INF, 1.0, r), r)
    return tl.where(y == 0, 1.0, tl.where(x == 1, 1.0, r))


@triton.jit
def pow_tensor_scalar(x, y, CASE: tl.constexpr):
    """pow(Tensor, Scalar) as ATen's kernel special-cases the exponent: 0.5, 2, 3, -0.5, -1 and -2
    are computed without pow (different last bits, and sqrt(-0.0), sqrt(-inf) differ from pow);
    CASE "general" is pow itself."""
    if CASE == "sqrt":
        r = sqrt(x)
    elif CASE == "square":
        r = x * x
    elif CASE == "cube":
        r = x * x * x
    elif CASE == "rsqrt":
        r = rsqrt(x)
    elif CASE == "reciprocal":
        r = reciprocal(x)
    elif CASE == "inv_square":
        r = _div_rn(1, x * x)
    else:
        tl.static_assert(CASE == "general", "CASE is sqrt, square, cube, rsqrt, reciprocal, inv_square or general")
        r = pow(x, y)
    return r


@triton.jit
def atan2(x, y):
    return libdevice.atan2(x, y)


@triton.jit
def hypot(x, y):
    return libdevice.hypot(x, y)


# ---------------------------------------------------------------------------------------------
# Maximum, minimum, clamp
# ---------------------------------------------------------------------------------------------


@triton.jit
def maximum(x, y):
    # ATen: a NaN operand is the result, else ::max (PTX max, as tl.maximum); bool: or.
    r = tl.maximum(x, y)
    if x.dtype.is_floating():
        r = tl.where(y != y, y, r)
        r = tl.where(x != x, x, r)
    return r


@triton.jit
def minimum(x, y):
    r = tl.minimum(x, y)
    if x.dtype.is_floating():
        r = tl.where(y != y, y, r)
        r = tl.where(x != x, x, r)
    return r


@triton.jit
def clamp(x, min, max):
    # ATen's clamp with both bounds, scalar or tensor: a NaN x passes the comparisons, a NaN bound
    # is the result (min's before max's).
    r = tl.where(x < min, min, x)
    r = tl.where(max < r, max, r)
    if r.dtype.is_floating():
        r = tl.where(max != max, max, r)
        r = tl.where(min != min, min, r)
    return r


@triton.jit
def clamp_min(x, min):
    # A NaN x stays (the comparison fails); a NaN bound fills, as ATen's scalar and tensor paths do.
    r = tl.where(x < min, min, x)
    if r.dtype.is_floating():
        r = tl.where(min != min, min, r)
    return r


@triton.jit
def clamp_max(x, max):
    r = tl.where(max < x, max, x)
    if r.dtype.is_floating():
        r = tl.where(max != max, max, r)
    return r


# ---------------------------------------------------------------------------------------------
# Rounding and sign (integers are returned as they are)
# ---------------------------------------------------------------------------------------------


@triton.jit
def floor(x):
    if x.dtype.is_floating():
        r = tl.floor(x)
    else:
        r = x
    return r


@triton.jit
def ceil(x):
    if x.dtype.is_floating():
        r = tl.ceil(x)
    else:
        r = x
    return r


@triton.jit
def trunc(x):
    if x.dtype.is_floating():
        r = libdevice.trunc(x)
    else:
        r = x
    return r


@triton.jit
def round(x):
    # Half to even, as ATen's nearbyint (cvt.rni).
    if x.dtype.is_floating():
        r = libdevice.rint(x)
    else:
        r = x
    return r


@triton.jit
def sign(x):
    if x.dtype == tl.int1:
        r = x
    else:
        # ATen's (0 < x) - (x < 0): 0 for NaN, +0 for -0.0.
        r = (x > 0).to(x.dtype) - (x < 0).to(x.dtype)
    return r


# ---------------------------------------------------------------------------------------------
# Exponentials, logarithms, roots, trigonometry (floating point only)
# ---------------------------------------------------------------------------------------------


@triton.jit
def exp(x):
    return libdevice.exp(x)


@triton.jit
def exp2(x):
    return libdevice.exp2(x)


@triton.jit
def expm1(x):
    return libdevice.expm1(x)


@triton.jit
def log(x):
    return libdevice.log(x)


@triton.jit
def log1p(x):
    return libdevice.log1p(x)


@triton.jit
def log2(x):
    return libdevice.log2(x)


@triton.jit
def log10(x):
    return libdevice.log10(x)


@triton.jit
def sqrt(x):
    if x.dtype == tl.float32:
        r = tl.math.sqrt_rn(x)
    else:
        r = tl.sqrt(x)  # fp64 sqrt lowers to sqrt.rn.f64
    return r


@triton.jit
def rsqrt(x):
    # ATen calls ::rsqrt, which is libdevice's rsqrt (rsqrt.approx for fp32, as in ATen).
    return libdevice.rsqrt(x)


@triton.jit
def sin(x):
    return libdevice.sin(x)


@triton.jit
def cos(x):
    return libdevice.cos(x)


@triton.jit
def tan(x):
    return libdevice.tan(x)


@triton.jit
def tanh(x):
    return libdevice.tanh(x)


@triton.jit
def erf(x):
    return libdevice.erf(x)


# ---------------------------------------------------------------------------------------------
# Activations and their backward ops (floating point only, except relu and threshold)
# ---------------------------------------------------------------------------------------------


@triton.jit
def relu(x):
    # ATen's relu is clamp_min(x, 0): NaN and -0.0 pass through.
    return tl.where(x < 0, 0, x)


@triton.jit
def threshold(x, threshold, value):
    # The driver passes threshold and value rounded to x's dtype, as ATen's kernel takes them.
    return tl.where(x <= threshold, value, x)


@triton.jit
def threshold_backward(grad, x, threshold):
    return tl.where(x <= threshold, 0, grad)


@triton.jit
def leaky_relu(x, negative_slope):
    return tl.where(x > 0, x, x * negative_slope)


@triton.jit
def elu(x, alpha, scale, input_scale):
    return tl.where(x > 0, x * scale, libdevice.expm1(x * input_scale) * (alpha * scale))


@triton.jit
def hardsigmoid(x):
    # ATen multiplies by the float 1/6 (also for fp64) and clamps with std::min/max, so NaN stays NaN.
    return _std_min(_std_max(x + 3, 0), 6) * 0.16666667163372039795


@triton.jit
def hardswish(x):
    return x * _std_min(_std_max(x + 3, 0), 6) * 0.16666667163372039795


@triton.jit
def sigmoid(x):
    return _sigmoid(x)


@triton.jit
def sigmoid_backward(grad, y):
    return grad * (1 - y) * y


@triton.jit
def tanh_backward(grad, y):
    return grad * (1 - y * y)


@triton.jit
def silu(x):
    # x / (1 + exp(-x)) as ATen: silu(-inf) is NaN there too.
    return _div_rn(x, 1 + libdevice.exp(-x))


@triton.jit
def silu_backward(grad, x):
    s = _sigmoid(x)
    return grad * s * (1 + x * (1 - s))


@triton.jit
def _min_combine(a, b):
    # tl.reduce's combine (tl.min is a jit function of triton.language that the CPU tests'
    # interpreter cannot call).
    return tl.minimum(a, b)


@triton.jit
def softplus(x, beta, threshold):
    above = x * beta > threshold
    # ATen's threads branch: above the threshold they skip log1p(exp()), and a batch of such
    # values is memory-bound. A block that is all above takes the same shortcut.
    if tl.reduce(above.to(tl.int32), 0, _min_combine) == 1:
        r = x
    else:
        r = tl.where(above, x, _div_rn(libdevice.log1p(libdevice.exp(x * beta)), beta))
    return r


@triton.jit
def mish(x):
    return x * libdevice.tanh(libdevice.log1p(libdevice.exp(x)))


@triton.jit
def gelu(x, APPROXIMATE: tl.constexpr):
    if APPROXIMATE == "tanh":
        inner = (x + x * x * x * _GELU_KAPPA) * _GELU_TANH_BETA
        r = 0.5 * x * (1 + libdevice.tanh(inner))
    else:
        tl.static_assert(APPROXIMATE == "none", "APPROXIMATE is none or tanh")
        r = x * 0.5 * (1 + libdevice.erf(x * _M_SQRT1_2))
    return r


@triton.jit
def gelu_backward(grad, x, APPROXIMATE: tl.constexpr):
    if APPROXIMATE == "tanh":
        x_sq = x * x
        tanh_inner = libdevice.tanh((x + x_sq * x * _GELU_KAPPA) * _GELU_TANH_BETA)
        left_derivative = 0.5 * (1 + tanh_inner)
        inner_derivative = (1 + x_sq * (3 * _GELU_KAPPA)) * _GELU_TANH_BETA
        right_derivative = 0.5 * x * (1 - tanh_inner * tanh_inner) * inner_derivative
        r = grad * (left_derivative + right_derivative)
    else:
        tl.static_assert(APPROXIMATE == "none", "APPROXIMATE is none or tanh")
        cdf = 0.5 * (1 + libdevice.erf(x * _M_SQRT1_2))
        pdf = libdevice.exp(-0.5 * x * x) * _GELU_ERF_BETA
        r = grad * (cdf + x * pdf)
    return r


# ---------------------------------------------------------------------------------------------
# Predicates and comparisons (tl.int1 results)
# ---------------------------------------------------------------------------------------------


@triton.jit
def isnan(x):
    return x != x  # never true for integers


@triton.jit
def frexp(x):
    """(mantissa, exponent): x = mantissa * 2**exponent with 0.5 <= |mantissa| < 1, from fp32 bits
    (integer operations only, so subnormals need no FTZ-free arithmetic); 0, +-inf and NaN are
    their own mantissa with exponent 0, as CUDA's frexpf gives them."""
    bits = x.to(tl.int32, bitcast=True)
    field = (bits >> 23) & 0xFF
    fraction = bits & 0x7FFFFF
    # A subnormal's leading bit p (of fraction * 2**-149) is the exponent of the exact float(fraction).
    lead = ((fraction.to(tl.float32).to(tl.int32, bitcast=True) >> 23) & 0xFF) - 127
    subnormal = field == 0
    exponent = tl.where(subnormal, lead - 148, field - 126)
    fraction = tl.where(subnormal, (fraction << tl.where(subnormal, 23 - lead, 0)) & 0x7FFFFF, fraction)
    mantissa = ((bits & -2147483648) | (126 << 23) | fraction).to(tl.float32, bitcast=True)
    special = (x == 0) | (x != x) | (tl.abs(x) == _INF)
    return tl.where(special, x, mantissa), tl.where(special, 0, exponent)


@triton.jit
def isinf(x):
    if x.dtype.is_floating():
        r = tl.abs(x) == _INF
    else:
        r = x != x  # all false
    return r


@triton.jit
def isfinite(x):
    if x.dtype.is_floating():
        r = tl.abs(x) < _INF  # false for NaN too
    else:
        r = x == x  # all true
    return r


@triton.jit
def isclose(x, y, rtol, atol, EQUAL_NAN: tl.constexpr):
    """torch.isclose: x == y, or both NaN with EQUAL_NAN, or a finite |x - y| <= atol + |rtol * y|.
    Integer and bool inputs are compared in fp32 (torch's default dtype): pass rtol and atol as fp32
    for them. fp16/bf16: torch rounds each intermediate to the input dtype; this keeps them in fp32."""
    close = x == y
    if x.dtype.is_floating():
        if EQUAL_NAN:
            close = close | ((x != x) & (y != y))
    else:
        x = x.to(tl.float32)
        y = y.to(tl.float32)
    actual = tl.abs(x - y)
    allowed = atol + tl.abs(rtol * y)
    # A zero allowance admits only equality, which `close` holds: torch short-circuits zero
    # tolerances, as integers rounded to fp32 may compare equal.
    return close | ((actual < _INF) & (actual <= allowed) & (allowed > 0))


@triton.jit
def eq(x, y):
    return x == y


@triton.jit
def ne(x, y):
    return x != y


@triton.jit
def lt(x, y):
    return x < y


@triton.jit
def le(x, y):
    return x <= y


@triton.jit
def gt(x, y):
    return x > y


@triton.jit
def ge(x, y):
    return x >= y


# ---------------------------------------------------------------------------------------------
# Logical (any dtype: nonzero, NaN included, is true) and bitwise (integers and bool)
# ---------------------------------------------------------------------------------------------


@triton.jit
def logical_not(x):
    return x == 0


@triton.jit
def logical_and(x, y):
    return (x != 0) & (y != 0)


@triton.jit
def logical_or(x, y):
    return (x != 0) | (y != 0)


@triton.jit
def logical_xor(x, y):
    return (x != 0) ^ (y != 0)


@triton.jit
def bitwise_not(x):
    return ~x


@triton.jit
def bitwise_and(x, y):
    return x & y


@triton.jit
def bitwise_or(x, y):
    return x | y


@triton.jit
def bitwise_xor(x, y):
    return x ^ y


@triton.jit
def bitwise_left_shift(x, y):
    # ATen: a negative shift or one of the bit width or more gives 0 (in LLVM it would be poison).
    out_of_range = (y < 0) | (y >= x.dtype.primitive_bitwidth)
    return tl.where(out_of_range, 0, x << tl.where(out_of_range, 0, y))


@triton.jit
def bitwise_right_shift(x, y):
    # ATen: a negative or too large shift shifts by the width less the sign bit: the sign fill for
    # signed types, 0 for unsigned ones.
    if x.dtype.is_int_signed():
        r = x >> tl.where((y < 0) | (y >= x.dtype.primitive_bitwidth), x.dtype.primitive_bitwidth - 1, y)
    else:
        out_of_range = y >= x.dtype.primitive_bitwidth
        r = tl.where(out_of_range, 0, x >> tl.where(out_of_range, 0, y))
    return r


# ---------------------------------------------------------------------------------------------
# Selection and replacement
# ---------------------------------------------------------------------------------------------


@triton.jit
def where(condition, x, y):
    return tl.where(condition, x, y)


@triton.jit
def masked_fill(x, mask, value):
    return tl.where(mask, value, x)


@triton.jit
def nan_to_num(x, nan, posinf, neginf):
    # The replacements are the caller's (torch's defaults: 0 and the output dtype's finite extremes).
    if x.dtype.is_floating():
        r = tl.where(x == _INF, posinf, tl.where(x == -_INF, neginf, x))
        r = tl.where(x != x, nan, r)
    else:
        r = x
    return r
