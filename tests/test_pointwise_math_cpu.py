"""The scalar functions of kernels/pointwise_math.py under the interpreter, against torch on the CPU.

Each function runs inside `_apply`, a harness kernel doing what a generated kernel does around it:
load, fp16/bf16 to fp32, call, cast to the output dtype, store. The reference is torch on the CPU
in the compute type (fp16/bf16 inputs computed in fp32, then rounded; fp32 and fp64 as they are),
so that intermediate overflow lands as in torch (hardswish(3e38) is inf in fp32); a case may ask
for fp64 where torch's vectorized CPU kernel strays from the formula CUDA evaluates. Tolerances are
TESTING.md's; integers and bool are exact; NaN, +-inf and the sign of zero must land where torch
puts them.

Triton's interpreter cannot make extern calls, so libdevice runs through conftest's stand-in:
the real triton.language.extra.cuda.libdevice wrappers (their dtype dispatch included, as compiled
code sees it) with each __nv_* function evaluated by torch in float64 and rounded to the operand's
type, a correctly rounded stand-in for libdevice's 1-2 ulp functions. `test_compiles` builds every
function for sm_90 as the generated kernels will.
"""

import dataclasses
import functools
import os
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from conftest import interpreted_math, libdevice_by_torch

from kernels import pointwise_math

NAN, INF = float("nan"), float("inf")
FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
SIGNED = (torch.int8, torch.int16, torch.int32, torch.int64)
INTS = SIGNED + (torch.uint8,)
BOOL = (torch.bool,)
RTOL = {torch.float16: 1e-3, torch.bfloat16: 1.6e-2, torch.float32: 1.3e-6, torch.float64: 1e-7}
N = 200


# --- harness ---------------------------------------------------------------------------------

def _interpreter_jit(fn):
    """triton.jit under TRITON_INTERPRET=1, as conftest's interpreted() loads kernels/ modules."""
    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        return triton.jit(fn)
    finally:
        if previous is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = previous


@_interpreter_jit
def _apply(out, a, b, c, params, n, FN: tl.constexpr, N_IN: tl.constexpr, N_PARAMS: tl.constexpr,
           MODES: tl.constexpr, BLOCK: tl.constexpr):
    # Interpreter-only Python (lists, star-args) around FN; the math is all in FN.
    offs = tl.arange(0, BLOCK)
    mask = offs < n
    operands = []
    for ptr in (a, b, c)[:N_IN]:
        v = tl.load(ptr + offs, mask=mask)
        if v.dtype == tl.bfloat16:
            # Widen by the bits: the interpreter's bf16 -> fp32 conversion garbles subnormals (the GPU's is exact).
            v = (v.to(tl.int16, bitcast=True).to(tl.int32) << 16).to(tl.float32, bitcast=True)
        elif v.dtype == tl.float16:
            v = v.to(tl.float32)
        operands.append(v)
    scalars = [tl.load(params + i) for i in range(N_PARAMS)]
    r = FN(*operands, *scalars, *MODES)
    tl.store(out + offs, r.to(out.dtype.element_ty), mask=mask)


@pytest.fixture(scope="module")
def pm():
    return interpreted_math()


def run(pm, op, operands, params, param_dtype, modes, out_dtype):
    n = operands[0].numel()
    out = torch.full((n,), NAN if out_dtype.is_floating_point else 123, dtype=out_dtype)  # poisoned
    ptrs = operands + [operands[0]] * (3 - len(operands))
    scalars = torch.tensor(params if params else [0], dtype=param_dtype)
    with libdevice_by_torch():
        _apply[(1,)](out, *ptrs, scalars, n, FN=getattr(pm, op), N_IN=len(operands), N_PARAMS=len(params),
                     MODES=tuple(modes), BLOCK=triton.next_power_of_2(n))
    return out


# --- inputs ----------------------------------------------------------------------------------

# The first PAIRED of each list meet each other in binary ops.
PAIRED = 12
FLOAT_SPECIALS = [NAN, INF, -INF, 0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 3e38, 1e-40, -0.5, 2.5, -3.0, 7.25, -20.0,
                  100.0, 1e-3, -1e-30, -65504.0]  # fmt: skip


def _int_specials(dtype):
    info = torch.iinfo(dtype)
    if info.min == 0:
        return [0, 1, 2, 3, 7, 100, info.max, info.max - 1, 128, 64, 5, 200]
    return [0, 1, -1, 2, -2, 3, 7, info.max, info.min, info.max - 1, info.min + 1, 100, -3, -7, -100]


def _random(dtype, n, gen):
    if dtype.is_floating_point:
        scale = torch.exp(torch.empty(n // 2, dtype=torch.float64).uniform_(-12, 12, generator=gen))
        wide = scale * torch.randn(n // 2, generator=gen, dtype=torch.float64).sign()
        return torch.cat([torch.randn(n - n // 2, generator=gen, dtype=torch.float64) * 4, wide]).to(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, (n,), generator=gen).bool()
    info = torch.iinfo(dtype)
    small = torch.randint(max(info.min, -200), min(info.max, 200), (n // 2,), generator=gen)
    full = torch.randint(info.min, info.max, (n - n // 2,), generator=gen, dtype=torch.int64)
    return torch.cat([small, full]).to(dtype)


def _specials(dtype):
    if dtype.is_floating_point:
        return torch.tensor(FLOAT_SPECIALS, dtype=torch.float64).to(dtype)
    if dtype == torch.bool:
        return torch.tensor([False, True])
    return torch.tensor(_int_specials(dtype), dtype=dtype)


def make_operands(arity, dtype, gen):
    """N values per operand: the specials (every pair of them on the first two operands, random ones
    on a third), then random values."""
    s = _specials(dtype)
    if arity == 1:
        heads = [s]
    else:
        k = min(len(s), PAIRED)
        heads = [s[:k].repeat_interleave(k), s[:k].repeat(k)]
        heads += [s[torch.randint(0, len(s), (k * k,), generator=gen)] for _ in range(arity - 2)]
    return [torch.cat([h, _random(dtype, N - len(h), gen)]) for h in heads]


# --- the table -------------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    op: str  # the function in kernels/pointwise_math.py
    ref: Callable  # torch on the operands, the params and modes bound
    arity: int
    dtypes: tuple
    params: Callable = lambda dtype: ()  # runtime scalars for a dtype, passed in the compute type
    modes: tuple = ()
    fix: Callable = None  # (operands, dtype, generator) -> operands kept in the op's domain
    masks: tuple = ()  # operand indices that are bool masks whatever the dtype
    name: str = ""
    ref_dtype: torch.dtype = None  # computes float references in this dtype instead of the compute type
    zero_sign: str = "all"  # where -0.0 must match: "all", "not_ties" (not for +0/-0 operand ties), "none"


def _by_kind(dtype, f, i, b=None):
    return f if dtype.is_floating_point else (b if dtype == torch.bool else i)


def _nonzero_divisor(ops, dtype, gen):
    x, y = ops
    if dtype.is_floating_point:
        return ops
    y = torch.where(y == 0, torch.ones_like(y), y)
    if dtype in SIGNED:  # INT_MIN / -1 overflows (SIGFPE on the CPU)
        y = torch.where((x == torch.iinfo(dtype).min) & (y == -1), torch.ones_like(y), y)
    return [x, y]


def _small_exponent(ops, dtype, gen):
    # Integer exponents: each special base meets lo..lo+11 (negative ones included), then random ones up to 70.
    if dtype.is_floating_point:
        return ops
    lo = -5 if dtype in SIGNED else 0
    exponents = torch.randint(lo, min(70, torch.iinfo(dtype).max), ops[1].shape, generator=gen)
    exponents[:PAIRED * PAIRED] = torch.arange(PAIRED).repeat(PAIRED) + lo
    return [ops[0], exponents.to(dtype)]


def _shift_amount(ops, dtype, gen):
    bits = torch.iinfo(dtype).bits
    lo = -3 if dtype in SIGNED else 0
    amounts = torch.randint(lo, bits + 6, ops[1].shape, generator=gen)
    if dtype == torch.uint8:
        amounts[:4] = torch.tensor([128, 200, 255, 8])
    return [ops[0], amounts.to(dtype)]


def _near(ops, dtype, gen):
    # y within a few tolerances of x, exactly equal, or special, so both isclose outcomes occur.
    x, y = ops
    if dtype == torch.bool:
        return ops
    noise = torch.randn(x.shape, generator=gen, dtype=torch.float64) * (1e-5 * x.double().abs() + 1e-4)
    near = (x.double() + noise).to(dtype) if dtype.is_floating_point else x + torch.randint(
        -2, 3, x.shape, generator=gen).to(dtype)
    pick = torch.randint(0, 3, x.shape, generator=gen)
    return [x, torch.where(pick == 0, near, torch.where(pick == 1, x, y))]


def _finite_quotient(ops, dtype, gen):
    # torch's CPU addcdiv computes (value * t1) / t2, CUDA's value * (t1 / t2): they part where t1 / t2 overflows.
    x, t1, t2 = ops
    huge = (t1.double() / t2.double()).abs() > torch.finfo(OPMATH[dtype]).max
    return [x, t1, torch.where(huge, torch.ones_like(t2), t2)]


def _weight_range(ops, dtype, gen):
    w = torch.rand(ops[2].shape, generator=gen, dtype=torch.float64) * 3 - 1
    w[:8] = torch.tensor([0.5, -0.5, 0.4999, 0.0, 1.0, NAN, INF, -1.0])
    return ops[:2] + [w.to(dtype)]


ACTIVATIONS = [
    Case("relu", torch.relu, 1, FLOATS + SIGNED),
    Case("threshold", lambda x, t, v: F.threshold(x, t, v), 1, FLOATS + INTS,
         params=lambda d: _by_kind(d, (0.5, -2.0), (3, -7))),
    Case("threshold_backward", lambda g, x, t: torch.ops.aten.threshold_backward(g, x, t), 2, FLOATS + INTS,
         params=lambda d: _by_kind(d, (0.5,), (3,))),
    Case("leaky_relu", lambda x, s: F.leaky_relu(x, s), 1, FLOATS, params=lambda d: (0.01,)),
    Case("elu", lambda x, a, s, i: torch.ops.aten.elu(x, a, s, i), 1, FLOATS,
         params=lambda d: (1.6732632423543772, 1.0507009873554805, 1.5)),
    Case("hardsigmoid", F.hardsigmoid, 1, FLOATS),
    Case("hardswish", F.hardswish, 1, FLOATS),
    Case("sigmoid", torch.sigmoid, 1, FLOATS),
    Case("sigmoid_backward", torch.ops.aten.sigmoid_backward, 2, FLOATS),
    Case("tanh_backward", torch.ops.aten.tanh_backward, 2, FLOATS),
    Case("silu", F.silu, 1, FLOATS),
    Case("silu_backward", torch.ops.aten.silu_backward, 2, FLOATS),
    Case("softplus", lambda x, b, t: F.softplus(x, b, t), 1, FLOATS, params=lambda d: (2.0, 5.0)),
    Case("softplus", lambda x, b, t: F.softplus(x, b, t), 1, FLOATS, params=lambda d: (1.0, 20.0), name="default"),
    Case("mish", F.mish, 1, FLOATS),
    Case("gelu", functools.partial(F.gelu, approximate="tanh"), 1, FLOATS, modes=("tanh",), name="tanh"),
    Case("gelu_backward", functools.partial(torch.ops.aten.gelu_backward, approximate="tanh"), 2, FLOATS,
         modes=("tanh",), name="tanh"),
    # torch's vectorized fp32 CPU erf-GELU gives gelu(inf) = NaN and inf at 3e38, and its backward gives
    # +0 where the formula (CUDA's, and this) gives -6e-22: fp64 references, whose zeros fall elsewhere.
    Case("gelu", functools.partial(F.gelu, approximate="none"), 1, FLOATS, modes=("none",), name="none",
         ref_dtype=torch.float64, zero_sign="none"),
    Case("gelu_backward", functools.partial(torch.ops.aten.gelu_backward, approximate="none"), 2, FLOATS,
         modes=("none",), name="none", ref_dtype=torch.float64, zero_sign="none"),
]  # fmt: skip

UNARY_FLOAT = ["exp", "exp2", "expm1", "log", "log1p", "log2", "log10", "sqrt", "rsqrt", "reciprocal", "sin",
               "cos", "tan", "tanh", "erf"]  # fmt: skip

CASES = ACTIVATIONS + [Case(op, getattr(torch, op), 1, FLOATS) for op in UNARY_FLOAT] + [
    Case("copy", torch.clone, 1, FLOATS + INTS + BOOL),
    # copy_ into fp16 / bf16: the harness then rounds this fp32 once more, as c10 does.
    Case("to_fp32", lambda x: x.float(), 1, FLOATS + INTS + BOOL),
    Case("abs", torch.abs, 1, FLOATS + INTS),
    Case("neg", torch.neg, 1, FLOATS + INTS),
    Case("sign", torch.sign, 1, FLOATS + INTS + BOOL),
    Case("floor", torch.floor, 1, FLOATS + INTS),
    Case("ceil", torch.ceil, 1, FLOATS + INTS),
    Case("trunc", torch.trunc, 1, FLOATS + INTS),
    Case("round", torch.round, 1, FLOATS + INTS),
    Case("add", lambda x, y, a: torch.add(x, y, alpha=a), 2, FLOATS + INTS + BOOL,
         params=lambda d: (_by_kind(d, -0.999, 3, True),)),
    Case("sub", lambda x, y, a: torch.sub(x, y, alpha=a), 2, FLOATS + INTS,
         params=lambda d: (_by_kind(d, 100.001, -3),)),
    Case("mul", torch.mul, 2, FLOATS + INTS + BOOL),
    Case("div", torch.div, 2, FLOATS, modes=("none",), name="none"),
    Case("div", functools.partial(torch.div, rounding_mode="trunc"), 2, FLOATS + INTS, modes=("trunc",),
         fix=_nonzero_divisor, name="trunc"),
    Case("div", functools.partial(torch.div, rounding_mode="floor"), 2, FLOATS + INTS, modes=("floor",),
         fix=_nonzero_divisor, name="floor"),
    Case("floor_divide", torch.floor_divide, 2, FLOATS + INTS, fix=_nonzero_divisor),
    # torch's fp32 CPU remainder is NaN for huge quotients (3e38 % 0.5) where CUDA's fmod is exact.
    Case("remainder", torch.remainder, 2, FLOATS + INTS, fix=_nonzero_divisor, ref_dtype=torch.float64),
    Case("pow", torch.pow, 2, FLOATS + INTS, fix=_small_exponent),
    # The approximate log2 and exp2 run exact here: this checks the signs and special values.
    Case("pow_bf16", torch.pow, 2, (torch.bfloat16,), fix=_small_exponent),
    # pow(Tensor, Scalar)'s special exponents ignore the second operand; ATen's CPU kernel
    # special-cases the same ones.
    *(Case("pow_tensor_scalar", (lambda e: lambda x, y: torch.pow(x, e))(e), 2, dtypes, modes=(case,), name=case)
      for case, e, dtypes in (("sqrt", 0.5, FLOATS), ("square", 2, FLOATS + INTS), ("cube", 3, FLOATS + INTS),
                              ("rsqrt", -0.5, FLOATS), ("reciprocal", -1.0, FLOATS), ("inv_square", -2.0, FLOATS))),
    Case("pow_tensor_scalar", torch.pow, 2, FLOATS + INTS, modes=("general",), fix=_small_exponent, name="general"),
    Case("atan2", torch.atan2, 2, FLOATS),
    Case("hypot", torch.hypot, 2, FLOATS),
    Case("maximum", torch.maximum, 2, FLOATS + INTS + BOOL),
    Case("minimum", torch.minimum, 2, FLOATS + INTS + BOOL),
    # +0/-0 ties: CUDA's clamp compares (x < min ? min : x), torch's CPU clamp uses vector max/min.
    Case("clamp", torch.clamp, 3, FLOATS + INTS, zero_sign="not_ties"),
    Case("clamp_min", torch.clamp_min, 2, FLOATS + INTS, zero_sign="not_ties"),
    Case("clamp_max", torch.clamp_max, 2, FLOATS + INTS, zero_sign="not_ties"),
    Case("lerp", torch.lerp, 3, FLOATS, fix=_weight_range),
    Case("addcmul", lambda x, a, b, v: torch.addcmul(x, a, b, value=v), 3, FLOATS + INTS,
         params=lambda d: (_by_kind(d, -0.999, 3),)),
    Case("addcdiv", lambda x, a, b, v: torch.addcdiv(x, a, b, value=v), 3, FLOATS, params=lambda d: (0.5,),
         fix=_finite_quotient),
    Case("nan_to_num", lambda x, n, p, m: torch.nan_to_num(x, n, p, m), 1, FLOATS,
         params=lambda d: (1.5, 1000.0, -1000.0)),
    Case("isnan", torch.isnan, 1, FLOATS + INTS + BOOL),
    Case("isinf", torch.isinf, 1, FLOATS + INTS + BOOL),
    Case("isfinite", torch.isfinite, 1, FLOATS + INTS + BOOL),
    Case("where", torch.where, 3, FLOATS + INTS + BOOL, masks=(0,)),
    Case("masked_fill", lambda x, m, v: x.masked_fill(m, v), 2, FLOATS + INTS + BOOL, masks=(1,),
         params=lambda d: (_by_kind(d, -3.5, 42, True),)),
] + [
    Case(op, getattr(torch, op), 2, FLOATS + INTS + BOOL) for op in ("eq", "ne", "lt", "le", "gt", "ge")
] + [
    Case("isclose", lambda x, y, r, a, nan=nan: torch.isclose(x, y, r, a, equal_nan=nan), 2, FLOATS + INTS + BOOL,
         params=lambda d: (1e-3, 1e-4), modes=(nan,), fix=_near, name=f"equal_nan={nan}") for nan in (False, True)
] + [
    Case("logical_not", torch.logical_not, 1, FLOATS + INTS + BOOL),
    Case("logical_and", torch.logical_and, 2, FLOATS + INTS + BOOL),
    Case("logical_or", torch.logical_or, 2, FLOATS + INTS + BOOL),
    Case("logical_xor", torch.logical_xor, 2, FLOATS + INTS + BOOL),
    Case("bitwise_not", torch.bitwise_not, 1, INTS + BOOL),
    Case("bitwise_and", torch.bitwise_and, 2, INTS + BOOL),
    Case("bitwise_or", torch.bitwise_or, 2, INTS + BOOL),
    Case("bitwise_xor", torch.bitwise_xor, 2, INTS + BOOL),
    Case("bitwise_left_shift", torch.bitwise_left_shift, 2, INTS, fix=_shift_amount),
    Case("bitwise_right_shift", torch.bitwise_right_shift, 2, INTS, fix=_shift_amount),
]  # fmt: skip

OPMATH = {torch.float16: torch.float32, torch.bfloat16: torch.float32, torch.float32: torch.float32,
          torch.float64: torch.float64}  # fmt: skip
REFERENCE = {torch.float16: torch.float32, torch.bfloat16: torch.float32}


def _param_dtype(case, dtype):
    if case.op == "isclose" and not dtype.is_floating_point:
        return torch.float32  # torch's default dtype holds the tolerances of integer inputs
    return OPMATH.get(dtype, dtype)


INTERPRETER_LIMITS = {
    ("bitwise_not", torch.uint8): "the interpreter builds the all-ones uint8 from -1, which NumPy 2 rejects",
}


def _cases():
    for case in CASES:
        for dtype in case.dtypes:
            label = "-".join(filter(None, [case.op, case.name, str(dtype).removeprefix("torch.")]))
            limit = INTERPRETER_LIMITS.get((case.op, dtype))
            marks = [pytest.mark.xfail(reason=limit, strict=True)] if limit else []
            yield pytest.param(case, dtype, id=label, marks=marks)


def _inputs(case, dtype):
    gen = torch.Generator().manual_seed(0)
    operands = make_operands(case.arity, dtype, gen)
    if case.fix:
        operands = case.fix(operands, dtype, gen)
    for i in case.masks:
        operands[i] = _random(torch.bool, N, gen)
    params = case.params(dtype)
    return operands, params, case.ref(*operands, *params).dtype


@pytest.mark.parametrize("case,dtype", _cases())
def test_matches_torch(pm, case, dtype):
    operands, params, expected_dtype = _inputs(case, dtype)
    out = run(pm, case.op, operands, list(params), _param_dtype(case, dtype), case.modes, expected_dtype)

    ref_dtype = case.ref_dtype or REFERENCE.get(dtype)
    if case.op == "isclose" or not dtype.is_floating_point or ref_dtype is None:
        ref = case.ref(*operands, *params)  # exact ops, and isclose's own comparison arithmetic
    else:
        up = [o if o.dtype == torch.bool else o.to(ref_dtype) for o in operands]
        ref = case.ref(*up, *params).to(expected_dtype)
    if expected_dtype.is_floating_point:
        bad = ~torch.isclose(out, ref, rtol=RTOL[expected_dtype], atol=1e-4, equal_nan=True)
        zeros = (ref == 0) & (out == 0) & (case.zero_sign != "none")
        if case.zero_sign == "not_ties":
            zeros &= ~functools.reduce(torch.logical_or, [(o == 0) & (o.signbit() != ref.signbit()) for o in operands])
        bad |= zeros & (out.signbit() != ref.signbit())  # -0.0 where torch gives -0.0
    else:
        bad = out != ref
    where = bad.nonzero().flatten()[:6].tolist()
    assert not where, [(tuple(o[i].item() for o in operands), out[i].item(), ref[i].item()) for i in where]


# Functions of two results, with a test of their own.
PAIR_FUNCTIONS = {"frexp"}


@_interpreter_jit
def _apply_pair(out0, out1, a, n, FN: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    mask = offs < n
    v = tl.load(a + offs, mask=mask)
    if v.dtype == tl.float16:
        v = v.to(tl.float32)
    if v.dtype == tl.bfloat16:  # by its bits: the interpreter's cast flushes bf16 subnormals, the GPU's does not
        v = (v.to(tl.int16, bitcast=True).to(tl.int32) << 16).to(tl.float32, bitcast=True)
    r0, r1 = FN(v)
    tl.store(out0 + offs, r0.to(out0.dtype.element_ty), mask=mask)
    tl.store(out1 + offs, r1.to(out1.dtype.element_ty), mask=mask)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_frexp(pm, dtype):
    """Mantissa and exponent of the specials, subnormals (of fp32; fp16's are normal there) and
    random values of every magnitude, exactly as torch."""
    x = torch.cat([make_operands(1, dtype, torch.Generator().manual_seed(0))[0],
                   torch.tensor([1e-40, -3e-45, 2.0**-149, 1.1754942e-38, 6e-8, -6.1e-5]).to(dtype)])
    mantissa = torch.full_like(x, NAN)
    exponent = torch.full(x.shape, 123, dtype=torch.int32)
    _apply_pair[(1,)](mantissa, exponent, x, x.numel(), FN=pm.frexp, BLOCK=triton.next_power_of_2(x.numel()))
    ref_mantissa, ref_exponent = torch.frexp(x)
    torch.testing.assert_close(mantissa, ref_mantissa, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(exponent, ref_exponent)
    signed = ~ref_mantissa.isnan()  # a NaN's sign bit is not a result (torch's bf16 frexp makes it +)
    assert torch.equal(mantissa.signbit()[signed], ref_mantissa.signbit()[signed])


def test_every_function_has_a_case():
    functions = {name for name, v in vars(pointwise_math).items()
                 if isinstance(v, triton.runtime.JITFunction) and not name.startswith("_")}
    assert functions == {case.op for case in CASES} | PAIR_FUNCTIONS


# --- compiled ------------------------------------------------------------------------------


@triton.jit
def _load_compute(ptr, offs, mask):
    v = tl.load(ptr + offs, mask=mask)
    if v.dtype == tl.float16 or v.dtype == tl.bfloat16:
        v = v.to(tl.float32)
    return v


@triton.jit
def _apply_compiled(out, ptrs, params, n, FN: tl.constexpr, MODES: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    operands = ()
    for i in tl.static_range(len(ptrs)):
        operands = operands + (_load_compute(ptrs[i], offs, mask),)
    tl.store(out + offs, FN(*operands, *params, *MODES).to(out.dtype.element_ty), mask=mask)


TRITON_TYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64",
               torch.int8: "i8", torch.uint8: "u8", torch.int16: "i16", torch.int32: "i32", torch.int64: "i64",
               torch.bool: "i1"}  # fmt: skip
# One dtype per code path: fp16/bf16 compute in fp32, the signed integers share int64's.
COMPILE_DTYPES = (torch.float32, torch.float64, torch.int64, torch.uint8, torch.bool)


def _compile_cases():
    for case in CASES:
        for dtype in case.dtypes:
            if dtype in COMPILE_DTYPES:
                label = "-".join(filter(None, [case.op, case.name, str(dtype).removeprefix("torch.")]))
                yield pytest.param(case, dtype, id=label)


@pytest.mark.skipif(tuple(int(v) for v in triton.__version__.split(".")[:2]) < (3, 8),
                    reason="the harness splats tuples into the call, which triton 3.6 cannot compile")
@pytest.mark.parametrize("case,dtype", _compile_cases())
def test_compiles(case, dtype):
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    operands, params, expected_dtype = _inputs(case, dtype)
    signature = {
        "out": "*" + TRITON_TYPE[expected_dtype],
        "ptrs": tuple("*" + TRITON_TYPE[o.dtype] for o in operands),
        "params": tuple(TRITON_TYPE[_param_dtype(case, dtype)] for _ in params),
        "n": "i32", "FN": "constexpr", "MODES": "constexpr", "BLOCK": "constexpr",
    }  # fmt: skip
    constexprs = {"FN": getattr(pointwise_math, case.op), "MODES": case.modes, "BLOCK": 128}
    kernel = triton.compile(ASTSource(_apply_compiled, signature, constexprs), target=GPUTarget("cuda", 90, 32))
    assert "div.full" not in kernel.asm["ptx"]  # Triton's approximate fp32 `/`: divisions go through div_rn
