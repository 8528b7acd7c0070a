"""The multi-tensor family on the CPU: adam_kernel in interpreter mode against ATen's CUDA math
(emulated operation for operation, bit for bit) and against torch.optim over several steps, with
every flag; the table and its plan; the declarations, generated prototypes and registration; the
AOT compile and the PTX of sample variants."""

import collections
import re
from unittest import mock

import numpy
import pytest
import torch
import triton.language as tl

from aot import compiler, schemas
from aot import family_multi_tensor as fam
from conftest import ROOT, _InterpretedLibdevice, fma_f32, interpreted, libdevice_by_torch, runtime_loop_bounds

GRID = fam.GRIDS[0]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Small chunks and blocks keep the interpreter fast and give every call many chunks; the math does
# not depend on them.
CHUNK, BLOCK = 64, 16
SIZES = [1, 63, 64, 65, 300, 0, 17]
HYPER = dict(lr=1e-2, beta1=0.9, beta2=0.999, weight_decay=0.1, eps=1e-8)


def kernels():
    k = interpreted("kernels.multi_tensor")
    k.libdevice = _InterpretedLibdevice()
    return k


def f64(x):
    """A float64 scalar argument: the interpreter would pass a Python float as fp32."""
    from triton.runtime.interpreter import TensorHandle

    return tl.tensor(TensorHandle(numpy.array([x], numpy.float64), tl.float64), tl.float64)


class State:
    """One param group's tensors, as torch.optim keeps them for a fused step."""

    def __init__(self, sizes, dtype, gen, amsgrad=False):
        self.params = [torch.randn(n, generator=gen).to(dtype) for n in sizes]
        self.grads = [torch.randn(n, generator=gen).to(dtype) for n in sizes]
        self.exp_avgs = [torch.zeros(n, dtype=dtype) for n in sizes]
        self.exp_avg_sqs = [torch.zeros(n, dtype=dtype) for n in sizes]
        self.max_exp_avg_sqs = [torch.zeros(n, dtype=dtype) for n in sizes] if amsgrad else []
        self.steps = [torch.tensor(0.0) for _ in sizes]

    def lists(self):
        return [self.params, self.grads, self.exp_avgs, self.exp_avg_sqs, self.max_exp_avg_sqs]

    def clone(self):
        other = State([], torch.float32, None)
        other.params, other.grads, other.exp_avgs, other.exp_avg_sqs, other.max_exp_avg_sqs = (
            [t.clone() for t in ts] for ts in self.lists())
        other.steps = [t.clone() for t in self.steps]
        return other


def table(s: State, programs: int):
    """The int64 table and plan the driver builds (csrc/ops/multi_tensor.cpp build_table)."""
    numels = [p.numel() for p in s.params]
    first, plan = fam.plan(numels, programs, CHUNK)
    rows = []
    for i, n in enumerate(numels):
        vmax = s.max_exp_avg_sqs[i].data_ptr() if s.max_exp_avg_sqs else 0
        rows += [s.params[i].data_ptr(), s.grads[i].data_ptr(), s.exp_avgs[i].data_ptr(),
                 s.exp_avg_sqs[i].data_ptr(), vmax, s.steps[i].data_ptr(), n, first[i]]
    rows += [0] * (fam.ROW - 1) + [first[-1]]
    t = torch.tensor(rows + plan, dtype=torch.int64)
    return t, t[len(rows):], (len(plan) - 1) // 2


def _convert_float(convert):
    """Triton's interpreter converts fp32 to bf16 by truncation (its "rtne" rounds half up); the
    GPU, like ATen, rounds to nearest even: convert as torch does."""

    def exact(data, src, dst, rounding_mode):
        if (src, dst) == (tl.float32, tl.bfloat16):
            return torch.from_numpy(data.astype(numpy.float32)).to(torch.bfloat16).view(torch.int16).numpy()
        if (src, dst) == (tl.bfloat16, tl.float32):
            return torch.from_numpy(data.view(numpy.int16)).view(torch.bfloat16).float().numpy()
        return convert(data, src, dst, rounding_mode)

    return exact


def run_kernel(s: State, *, adamw, amsgrad=False, maximize=False, grad_scale=None, found_inf=None, lr_tensor=None,
               programs=3, **hyper):
    """One step through the interpreted kernel, launched as the driver launches it."""
    h = {**HYPER, **hyper}
    tensors, plan, grid = table(s, programs)
    zero = torch.zeros(1)
    dtype = s.params[0].dtype if s.params else torch.float32
    from triton.runtime import interpreter

    with libdevice_by_torch(), mock.patch.object(interpreter, "_convert_float",
                                                  _convert_float(interpreter._convert_float)):
        kernels().adam_kernel[(grid,)](
            tensors, plan, zero if found_inf is None else found_inf, zero if grad_scale is None else grad_scale,
            zero if lr_tensor is None else lr_tensor, f64(h["lr"]), int(lr_tensor is not None), f64(h["beta1"]),
            f64(h["beta2"]), f64(h["weight_decay"]), f64(h["eps"]), int(maximize),
            DTYPE=fam.triton_dtype({v: k for k, v in DTYPES.items()}[dtype]), ADAMW=adamw, AMSGRAD=amsgrad,
            GRAD_SCALE=grad_scale is not None, CHUNK=CHUNK, BLOCK=BLOCK)


def f32(x):
    """A double rounded to fp32 (ATen's static_cast<opmath_t> of its hyperparameters)."""
    return torch.tensor(x, dtype=torch.float64).float()


# fp32 operations, each computed in fp64 and rounded once to fp32: exact for + - * / and sqrt
# (fp64 holds more than twice fp32's bits), as CUDA's IEEE operations round; fma rounds once too.
def add(a, b):
    return (a.double() + b.double()).float()


def sub(a, b):
    return (a.double() - b.double()).float()


def mul(a, b):
    return (a.double() * b.double()).float()


def div(a, b):
    return (a.double() / b.double()).float()


def sqrt(a):
    return a.double().sqrt().float()


def fma(a, b, c):
    a, b, c = torch.broadcast_tensors(a, b, c)
    return torch.from_numpy(fma_f32(a.numpy(), b.numpy(), c.numpy()))


def _f32(bits):
    return numpy.array([bits], numpy.uint32).view(numpy.float32)[0]


def cuda_powf(x, y):
    """CUDA 13's powf for 0 <= x < inf (what ATen's kernel runs for 1 - beta ** step), step by step
    as its SASS, in NumPy fp32 with fp64 products and single-rounding fmas; the hardware's
    approximate reciprocal is the exact one here, as in the interpreted kernel."""
    f32, f64 = numpy.float32, numpy.float64
    x, y = numpy.asarray(x, f32), numpy.asarray(y, f32)

    def mul(a, b):
        return (numpy.asarray(a, f64) * numpy.asarray(b, f64)).astype(f32)

    def add(a, b):
        return fma_f32(numpy.asarray(a, f32), f32(1.0), numpy.asarray(b, f32))

    def fma(a, b, c):
        return fma_f32(*(numpy.broadcast_arrays(*(numpy.asarray(v, f32) for v in (a, b, c)))))

    tiny = x < f32(2.0**-126)
    a = numpy.where(tiny, mul(x, f32(2.0**24)), x).astype(f32)
    bits = a.view(numpy.int32).astype(numpy.int64)
    e_bits = ((bits - 0x3F3504F3) & 0xFF800000) - ((bits - 0x3F3504F3) & 0x80000000) * 2  # signed
    m = (bits - e_bits).astype(numpy.uint32).view(f32)
    e = fma(e_bits.astype(f32), f32(2.0**-23), numpy.where(tiny, f32(-24.0), f32(0.0)))
    m_minus_1 = add(m, f32(-1.0))
    reciprocal = (1.0 / add(m, f32(1.0)).astype(f64)).astype(f32)
    u = mul(reciprocal, add(m_minus_1, m_minus_1))
    u2 = mul(u, u)
    hi = fma(u, f32(1.4426950216293334961), e)
    d = add(m_minus_1, -u)
    correction = mul(reciprocal, fma(m_minus_1, -u, add(d, d)))
    poly = fma(u2, _f32(0x3A2C32E4), f32(0.0032181653659790754318))
    poly = fma(u2, poly, f32(0.018033718690276145935))
    poly = mul(u2, fma(u2, poly, f32(0.12022458761930465698)))
    lo = fma(u, f32(1.4426950216293334961), add(e, -hi))
    lo = fma(correction, f32(1.4426950216293334961), lo)
    lo = fma(u, f32(1.9251366722983220825e-08), lo)
    lo = fma(correction, mul(poly, f32(3.0)), lo)
    lo = fma(u, poly, lo)
    log_hi = add(hi, lo)
    log_lo = add(lo, -add(log_hi, -hi))
    t = mul(y, log_hi)
    n = numpy.rint(t).astype(f32)
    f = add(fma(y, log_lo, fma(y, log_hi, -t)), add(t, -n))
    q = f32(1.0)
    q = fma(f, _f32(0x391FCB8E), f32(0.0013391353422775864601))
    for c in (0.0096188392490148544312, 0.055503588169813156128, 0.24022644758224487305, 0.69314718246459960938,
              1.0):
        q = fma(f, q, f32(c))
    low = numpy.where(n > 0, 0, 0x83000000)
    scale = ((low + 0x7F000000) % 2**32).astype(numpy.uint32).view(f32)
    with numpy.errstate(invalid="ignore"):
        exponent = ((numpy.nan_to_num(n).astype(numpy.int64) * 2**23 - low) % 2**32).astype(numpy.uint32).view(f32)
    power = mul(mul(q, scale), exponent)
    power = numpy.where(numpy.abs(t) > 152, numpy.where(t >= 0, f32(numpy.inf), f32(0.0)), power)
    power = numpy.where((x == 1) | (y == 0), f32(1.0), power)
    return numpy.where(x == 0, numpy.where(y < 0, f32(numpy.inf), f32(0.0)), power).astype(f32)


def powf(base, exponent):
    return torch.from_numpy(numpy.asarray(cuda_powf(base.numpy(), exponent.numpy())))


def aten_math(s: State, *, adamw, amsgrad=False, maximize=False, grad_scale=None, found_inf=None, lr_tensor=None,
              **hyper):
    """ATen's CUDA step (fused_adam_utils.cuh, torch 2.14's FusedAdamMathFunctor as nvcc builds it)
    in fp64 torch, rounded to fp32 after every operation ATen's fp32 code rounds: hyperparameters
    cast to fp32, bias corrections in fp32 from the fp32 step, the moments as fmas (the lerp form
    ATen writes), AdamW's decay fma(-(lr * wd), p, p) and Adam's fma(p, wd, g) (nvcc contracts
    both), each result rounded to the param's dtype when stored."""
    h = {**HYPER, **hyper}
    if found_inf is not None and found_inf.item() == 1:
        return
    lr = lr_tensor.float().reshape(()) if lr_tensor is not None else f32(h["lr"])
    beta1, beta2, wd, eps = f32(h["beta1"]), f32(h["beta2"]), f32(h["weight_decay"]), f32(h["eps"])
    for i, param in enumerate(s.params):
        step = s.steps[i].float()
        bias_correction1 = sub(f32(1.0), powf(beta1, step))
        bc2_sqrt = sqrt(sub(f32(1.0), powf(beta2, step)))
        step_size = div(lr, bias_correction1)
        p, g = param.float(), s.grads[i].float()
        m, v = s.exp_avgs[i].float(), s.exp_avg_sqs[i].float()
        if grad_scale is not None:
            g = div(g, grad_scale.float().reshape(()))
            s.grads[i].copy_(g)
        if maximize:
            g = -g
        if wd != 0:
            if adamw:
                p = fma(-mul(lr, wd), p, p)
            else:
                g = fma(p, wd, g)
        m = fma(beta1, m, fma(-beta1, g, g))
        g2 = mul(g, g)
        v = fma(beta2, v, fma(-beta2, g2, g2))
        if amsgrad:
            vmax = s.max_exp_avg_sqs[i].float()
            vmax = torch.where(vmax < v, v, vmax)
            s.max_exp_avg_sqs[i].copy_(vmax)
            root = sqrt(vmax)
        else:
            root = sqrt(v)
        denom = add(div(root, bc2_sqrt), eps)
        p = sub(p, div(mul(step_size, m), denom))
        param.copy_(p)
        s.exp_avgs[i].copy_(m)
        s.exp_avg_sqs[i].copy_(v)


def assert_same(got: State, want: State):
    for a, b in zip(got.lists(), want.lists()):
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True)


def increment(s: State):
    for t in s.steps:
        t += 1  # torch.optim does this before the fused call


FLAGS = [dict(adamw=True), dict(adamw=False), dict(adamw=True, amsgrad=True), dict(adamw=False, amsgrad=True),
         dict(adamw=True, maximize=True), dict(adamw=False, maximize=True, amsgrad=True),
         dict(adamw=True, weight_decay=0.0), dict(adamw=False, weight_decay=0.0)]


@runtime_loop_bounds
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()))
def test_kernel_is_atens_math_bit_for_bit(dtype, flags, seeded):
    """Three steps over tensors of uneven sizes (one element, around a chunk, several chunks, an
    empty one), programs that start mid-tensor and span several tensors."""
    s = State(SIZES, DTYPES[dtype], seeded, amsgrad=flags.get("amsgrad", False))
    ref = s.clone()
    for _ in range(3):
        increment(s)
        increment(ref)
        run_kernel(s, **flags)
        aten_math(ref, **flags)
        assert_same(s, ref)
        for g in s.grads + ref.grads:
            g.mul_(-0.7).add_(0.01)


@runtime_loop_bounds
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_grad_scale_found_inf_and_tensor_lr(dtype, seeded):
    """grad_scale divides the grads and writes them back; found_inf == 1 skips everything (any
    other value does not, as in ATen); an lr tensor is read as fp32."""
    scale, lr_tensor = torch.tensor([1024.0]), torch.tensor([3e-3])
    for flags in (dict(grad_scale=scale), dict(found_inf=torch.tensor([0.0])), dict(found_inf=torch.tensor([0.5])),
                  dict(lr_tensor=lr_tensor), dict(grad_scale=scale, found_inf=torch.tensor([0.0]), lr_tensor=lr_tensor,
                                                  amsgrad=True)):
        s = State(SIZES, DTYPES[dtype], seeded, amsgrad=flags.get("amsgrad", False))
        ref = s.clone()
        increment(s)
        increment(ref)
        run_kernel(s, adamw=True, **flags)
        aten_math(ref, adamw=True, **flags)
        assert_same(s, ref)
    s = State(SIZES, DTYPES[dtype], seeded)
    before = s.clone()
    increment(s)
    run_kernel(s, adamw=True, grad_scale=scale, found_inf=torch.tensor([1.0]))
    assert_same(s, before)


def test_cuda_powf_is_within_an_ulp_of_the_power():
    """The transcription of CUDA 13's powf is a powf: within an ulp of the exact power for the
    betas and steps an optimizer sees (it differs from the correctly rounded one now and then, as
    CUDA's does: which ulp it picks is what the GPU suite compares with ATen's)."""
    steps = numpy.arange(1, 50001, dtype=numpy.float32)
    for beta in (0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 0.9999, 1.0):
        base = numpy.full_like(steps, beta)
        got = cuda_powf(base, steps).view(numpy.int32).astype(numpy.int64)
        exact = numpy.power(base.astype(numpy.float64), steps.astype(numpy.float64)).astype(numpy.float32)
        assert numpy.abs(got - exact.view(numpy.int32)).max() <= 1, beta
    assert cuda_powf(numpy.float32(0.999), numpy.float32(102.0)) != numpy.float32(0.999) ** numpy.float32(102.0)


@runtime_loop_bounds
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.9999)], ids=str)
def test_bias_corrections_of_many_steps(betas, seeded):
    """One tensor per step count (1 to 300, then up to 2**24): the kernel's bias corrections are
    the reference's, bit for bit."""
    counts = list(range(1, 301)) + [1000, 12345, 10**5, 10**6, 2**24]
    s = State([3] * len(counts), torch.float32, seeded)
    for step, count in zip(s.steps, counts):
        step.fill_(float(count))
    ref = s.clone()
    hyper = dict(beta1=betas[0], beta2=betas[1])
    run_kernel(s, adamw=True, programs=7, **hyper)
    aten_math(ref, adamw=True, **hyper)
    assert_same(s, ref)


@runtime_loop_bounds
@pytest.mark.parametrize("programs", [1, 2, 7, 1000])
def test_any_grid_updates_every_element_once(programs, seeded):
    """However the chunks fall to programs (one program, fewer than the tensors, more than the
    chunks), every element is updated exactly once: a second update would move it again."""
    s = State(SIZES + [5 * CHUNK + 3], torch.float32, seeded)
    ref = s.clone()
    increment(s)
    increment(ref)
    run_kernel(s, adamw=True, programs=programs)
    aten_math(ref, adamw=True)
    assert_same(s, ref)


def torch_optimizer(params, adamw, **options):
    cls = torch.optim.AdamW if adamw else torch.optim.Adam
    return cls(params, foreach=False, **options)


# torch.optim's bf16 and fp16 steps round every operation to the param's dtype (and its fp16
# exp_avg_sq of small grads underflows, where the fused step's fp32 math does not): a few ulps.
@runtime_loop_bounds
@pytest.mark.parametrize("dtype,rtol,atol", [("fp32", 1e-5, 1e-6), ("bf16", 4e-2, 2e-2), ("fp16", 4e-2, 2e-2)])
@pytest.mark.parametrize("flags", [dict(adamw=True), dict(adamw=False, amsgrad=True, maximize=True),
                                   dict(adamw=True, amsgrad=True, weight_decay=0.0)], ids=["adamw", "adam", "amsgrad"])
def test_against_torch_optim(dtype, rtol, atol, flags, seeded):
    """Five steps against torch.optim's single-tensor path (its own formulas, in the param's dtype
    for bf16 and fp16): params and states agree within a few of the dtype's ulps."""
    flags = dict(flags)
    adamw = flags.pop("adamw")
    # eps 1e-8 is 0 in fp16, where torch.optim's denominators underflow to 0 (inf and NaN params).
    hyper = {**HYPER, "eps": 1e-3, **{k: flags.pop(k) for k in list(flags) if k in HYPER}}
    s = State([1, 100, 3 * CHUNK + 1], DTYPES[dtype], seeded, amsgrad=flags.get("amsgrad", False))
    params = [torch.nn.Parameter(p.clone()) for p in s.params]
    opt = torch_optimizer(params, adamw, lr=hyper["lr"], betas=(hyper["beta1"], hyper["beta2"]),
                          weight_decay=hyper["weight_decay"], eps=hyper["eps"], **flags)
    for step in range(5):
        grads = [torch.randn(p.shape, generator=seeded).to(p.dtype) for p in s.params]
        for p, g, mine in zip(params, grads, s.grads):
            p.grad = g.clone()
            mine.copy_(g)
        opt.step()
        increment(s)
        run_kernel(s, adamw=adamw, **hyper, **flags)
    for i, p in enumerate(params):
        state = opt.state[p]
        torch.testing.assert_close(s.params[i], p.detach(), rtol=rtol, atol=atol)
        torch.testing.assert_close(s.exp_avgs[i], state["exp_avg"], rtol=rtol, atol=atol)
        torch.testing.assert_close(s.exp_avg_sqs[i], state["exp_avg_sq"], rtol=rtol, atol=atol)
        if flags.get("amsgrad"):
            torch.testing.assert_close(s.max_exp_avg_sqs[i], state["max_exp_avg_sq"], rtol=rtol, atol=atol)
        assert s.steps[i].item() == state["step"].item() == 5


# ---- the table ---------------------------------------------------------------------------------


@pytest.mark.parametrize("programs", [1, 3, 64, 10**6])
def test_plan_covers_every_chunk_once(programs):
    numels = [0, 1, 8192, 8193, 0, 3 * 8192 - 1, 17, 0]
    first, plan = fam.plan(numels, programs)
    assert first == [0, 0, 1, 2, 4, 4, 7, 8, 8]
    total = first[-1]
    starts, tensors = plan[0:-1:2], plan[1:-1:2]
    assert plan[-1] == total and len(starts) == min(programs, total)
    assert starts == sorted(starts) and starts[0] == 0 and len(set(starts)) == len(starts)
    for start, t in zip(starts, tensors):
        assert first[t] <= start < first[t + 1]  # the tensor that holds the chunk (never an empty one)
    sizes = [b - a for a, b in zip(starts, starts[1:] + [total])]
    assert max(sizes) - min(sizes) <= 1  # balanced to within a chunk


CPP_MAIN = r"""
#include <cstdio>
#include <vector>
#include "multi_tensor_plan.h"
using namespace gems::multi_tensor_table;
int main() {
  const std::vector<std::vector<int64_t>> cases = {
CASES
  };
  for (const auto& c : cases) {  // programs, then the element counts
    std::vector<int64_t> table((c.size()) * kRow, 0);
    for (size_t i = 1; i < c.size(); ++i) table[(i - 1) * kRow + kNumel] = c[i];
    plan(table, c.size() - 1, c[0]);
    for (size_t i = 0; i < c.size(); ++i) std::printf("%lld ", (long long)table[i * kRow + kFirstChunk]);
    for (size_t i = c.size() * kRow; i < table.size(); ++i) std::printf("%lld ", (long long)table[i]);
    std::printf("\n");
  }
}
"""


def test_cpp_plan_is_the_python_one(tmp_path):
    """csrc/ops/multi_tensor_plan.h with the generated table header, compiled, fills the chunk
    columns and plans as plan() does, over a few hundred lists and grids."""
    import random
    import shutil
    import subprocess

    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    (tmp_path / fam.TABLE_HEADER).write_text(fam.generated_sources()[fam.TABLE_HEADER])
    rng = random.Random(0)
    sizes = [0, 1, fam.CHUNK - 1, fam.CHUNK, fam.CHUNK + 1, 5 * fam.CHUNK + 7, 65_536_000, 2**31 + 5]
    cases = [[rng.choice([1, 2, 3, 132, 528, 10**6])] + [rng.choice(sizes) for _ in range(rng.randint(1, 80))]
             for _ in range(300)]
    literal = ",\n".join("    {" + ", ".join(map(str, c)) + "}" for c in cases)
    (tmp_path / "main.cpp").write_text(CPP_MAIN.replace("CASES", literal))
    subprocess.run([cxx, "-std=c++20", "-O1", "-I", str(tmp_path), "-I", str(ROOT / "csrc" / "ops"), "-o",
                    str(tmp_path / "plan"), str(tmp_path / "main.cpp")], check=True)
    got = subprocess.run([str(tmp_path / "plan")], check=True, capture_output=True, text=True).stdout.splitlines()
    expected = []
    for c in cases:
        first, plan = fam.plan(c[1:], c[0])
        expected.append(" ".join(map(str, first + plan)) + " ")
    assert got == expected


def test_table_layout_is_one_declaration():
    """The kernel's columns, the family's row width and the generated header agree; the sentinel
    row's first column is the 0.0f stand-in; chunks hold whole blocks."""
    k = interpreted("kernels.multi_tensor")
    assert len(k.COLUMNS) == fam.ROW == k.ROW
    header = fam.generated_sources()[fam.TABLE_HEADER]
    enum = re.search(r"enum Column : int \{ (.*) \};", header).group(1).split(", ")
    camel = ["k" + "".join(w.capitalize() for w in c.split("_")) for c in k.COLUMNS]
    assert enum == camel
    assert f"kChunk = {fam.CHUNK};" in header and f"kRow = {fam.ROW};" in header
    assert all(fam.CHUNK % fam.block(dt, warp) == 0 for dt in fam.ELEMENT_BYTES for warp in (32, 64))
    driver = (ROOT / "csrc" / "ops" / "multi_tensor.cpp").read_text()
    assert "const int64_t* stand_in = table + sentinel;" in driver


# ---- declarations, prototypes, compile ----------------------------------------------------------


def test_declarations():
    assert [o.name for o in fam.ATEN_OVERRIDES] == list(fam.OVERLOADS)
    for op in fam.GEMS_OPS:
        assert "aten::" + op.schema == str(schemas.aten_schema(op.name))
        assert schemas.has_kernel(op.name, "CUDA")
    for p in GRID.points():
        v = GRID.make(p, 90)
        assert [n for n, _ in v.signature] == list(v.jit_function().arg_names)
        assert [n for n, _ in v.runtime_args] == [n for n, _ in fam.SIGNATURE]
        assert dict(v.constexprs)["BLOCK"] * fam.ELEMENT_BYTES[p["dtype"]] == 16 * 32 * fam.NUM_WARPS
        assert all(GRID.make(p, arch).runtime_args == v.runtime_args for arch in (80, 100))


def test_prototypes_are_generated_from_the_schemas():
    header = schemas.family_header("aot.family_multi_tensor", fam.GEMS_OPS, fam.ATEN_OVERRIDES)
    lists = ("at::TensorList self, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs, "
             "at::TensorList max_exp_avg_sqs, at::TensorList state_steps")
    scalars = ("double beta1, double beta2, double weight_decay, double eps, bool amsgrad, bool maximize, "
               "const std::optional<at::Tensor>& grad_scale, const std::optional<at::Tensor>& found_inf")
    assert f"void _fused_adamw_({lists}, double lr, {scalars});" in header
    assert f"void _fused_adam__tensor_lr({lists}, const at::Tensor& lr, {scalars});" in header
    assert header.count("void _fused_adamw__tensor_lr(") == 3  # cuda, meta, aten_impl


SAMPLES = [(80, dict(dtype="fp16", mode="adam", amsgrad="yes", grad_scale="no")),
           (90, dict(dtype="bf16", mode="adamw", amsgrad="no", grad_scale="no")),
           (100, dict(dtype="fp32", mode="adamw", amsgrad="yes", grad_scale="yes"))]


@pytest.mark.parametrize("arch,point", SAMPLES, ids=lambda s: str(s) if isinstance(s, int) else "_".join(s.values()))
def test_aot_compile(arch, point):
    v = GRID.make(point, arch)
    cubin, meta = compiler.compile_variant(v, arch)
    assert cubin[:4] == b"\x7fELF" and meta["name"] == "adam_kernel"
    assert meta["num_warps"] == fam.NUM_WARPS and meta["global_scratch_size"] == 0 and meta["shared"] == 0


def test_ptx_vectors_and_ieee_rounding():
    """Full blocks move 16-byte vectors of every array; fp32 divisions and square roots round as
    IEEE, but the two reciprocals of powf (the hardware's approximate one, as ATen's powf); all
    math is fp32 (fp64 only in the hyperparameters' conversion), the moments as fmas."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    v = GRID.make(dict(dtype="bf16", mode="adamw", amsgrad="yes", grad_scale="yes"), 90)
    k = triton.compile(ASTSource(v.jit_function(), dict(v.signature), dict(v.constexprs), {}),
                       target=GPUTarget("cuda", 90, 32), options={"num_warps": v.num_warps})
    ptx = k.asm["ptx"]
    ops = collections.Counter(re.findall(r"\b(?:ld|st)\.global[.\w]*|\b(?:div|sqrt|rcp)\.[\w.]+", ptx))
    assert ops["ld.global.v4.b32"] == 5 and ops["st.global.v4.b32"] == 5, ops  # grad written back, amsgrad
    assert ops["div.rn.f32"] > 0 and ops["sqrt.rn.f32"] > 0
    approximate = {op: n for op, n in ops.items() if op.startswith(("div.full", "div.approx", "sqrt.approx", "rcp"))}
    assert approximate == {"div.approx.ftz.f32": 2}, ops
    assert not re.search(r"\b(?:add|sub|mul|fma|div|sqrt)\.[\w.]*f64\b", ptx)
    assert "fma.rn.f32" in ptx


@runtime_loop_bounds
def test_bias_correction_uses_the_step_as_given():
    """The kernel reads the step tensors and never writes them (torch.optim increments them)."""
    s = State([5], torch.float32, torch.Generator().manual_seed(1))
    s.steps[0].fill_(7.0)
    ref = s.clone()
    run_kernel(s, adamw=True)
    aten_math(ref, adamw=True)
    assert_same(s, ref)
    assert s.steps[0].item() == 7.0


# ---- the built extension ------------------------------------------------------------------------


def test_gems_ops_on_meta_tensors_and_cpu():
    """The ops exist in torch.ops.gems with aten's schemas; on meta tensors they do nothing; CPU
    tensors get the dispatcher's error (no CPU kernel)."""
    pytest.importorskip("gems_aot")
    meta = [[torch.empty(3, device="meta")] for _ in range(4)]
    steps = [torch.empty((), device="meta")]
    for name in fam.OVERLOADS:
        base, _, overload = name.partition(".")
        op = getattr(getattr(torch.ops.gems, base), overload or "default")
        lr = torch.empty((), device="meta") if overload else 1e-3
        op(*meta, [], steps, lr=lr, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8, amsgrad=False,
           maximize=False)
    cpu = [[torch.zeros(3)] for _ in range(4)]
    with pytest.raises(NotImplementedError, match="CPU"):
        torch.ops.gems._fused_adamw_(*cpu, [], [torch.tensor(1.0)], lr=1e-3, beta1=0.9, beta2=0.999,
                                     weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)


def test_overrides_registered():
    gems_aot = pytest.importorskip("gems_aot")
    assert set(fam.OVERLOADS) <= set(gems_aot.registered_ops())
    assert gems_aot.enable(include=fam.OVERLOADS) == sorted(fam.OVERLOADS)
    gems_aot.disable()
