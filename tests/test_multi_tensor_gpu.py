"""GPU suite of the multi-tensor family: torch.optim.Adam / AdamW(fused=True) with gems' overrides
against ATen's fused CUDA kernel over several steps (params and states, every element within one
ulp of the dtype, two in fp32: the kernel is ATen's fp32 math operation for operation, powf
included, so they should agree bit for bit; the ulp is a margin, and a failure says how many
elements differ at all), every dtype and flag, grad_scale and found_inf, float and tensor lr, the
bias corrections of many steps, a CUDA graph of the step, and the counted fallbacks."""

import zlib

import pytest
import torch

import gems_aot
from aot.family_multi_tensor import OVERLOADS
from conftest import cuda_kernel_names, requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# The most ulps any element may differ by from ATen's result, after several steps.
ULPS = {torch.float32: 2, torch.bfloat16: 1, torch.float16: 1}
# One element, around a chunk (8192), uneven 2-d shapes, an empty tensor, a dense transposed one.
SHAPES = [(1,), (7,), (8191,), (8192,), (8193,), (300, 17), (0,), (1000, 33), (64, 129)]
STEPS = 3


@pytest.fixture(autouse=True)
def clean_counts():
    gems_aot.reset_fallback_counts()
    yield
    gems_aot.disable()


def seed(*key):
    torch.manual_seed(zlib.crc32(repr(key).encode()))


def make_params(dtype, shapes=SHAPES, transposed=True):
    params = [torch.randn(s, device="cuda").to(dtype) for s in shapes]
    if transposed:
        params.append(torch.randn(48, 33, device="cuda").to(dtype).t())
    return params


def grads_for(params, steps=STEPS):
    return [[torch.randn(p.shape, device="cuda").to(p.dtype).as_strided(p.shape, p.stride()) for p in params]
            for _ in range(steps)]


def copy(p):
    """p.clone() at p's distance from a 16-byte boundary: a misaligned param stays misaligned."""
    offset = p.data_ptr() % 16 // p.element_size()
    if offset == 0:
        return p.clone()
    return torch.empty(p.numel() + offset, device=p.device, dtype=p.dtype)[offset:].view(p.shape).copy_(p)


def run(params, grads, gems, adamw=True, **options):
    """STEPS optimizer steps on copies of params; returns the params and the optimizer state."""
    copies = [torch.nn.Parameter(copy(p)) for p in params]
    cls = torch.optim.AdamW if adamw else torch.optim.Adam
    opt = cls(copies, fused=True, **options)
    with gems_aot.use_gems(include=list(OVERLOADS) if gems else []):
        for step in grads:
            for p, g in zip(copies, step):
                p.grad = g.clone()
            opt.step()
    torch.cuda.synchronize()
    return copies, opt


def ulp_distance(got, want):
    """Per element, how many representable values of the dtype lie between got and want (0 for
    +0 and -0); NaN where either is NaN."""
    bits = {torch.float32: 32, torch.bfloat16: 16, torch.float16: 16}[got.dtype]
    ints = {32: torch.int32, 16: torch.int16}[bits]

    def ordered(x):  # sign and magnitude as one monotonic integer
        i = x.contiguous().view(ints).to(torch.int64)
        magnitude = i & ((1 << (bits - 1)) - 1)
        return torch.where(i < 0, -magnitude, magnitude)

    distance = (ordered(got) - ordered(want)).abs().double()
    return torch.where(got.isnan() | want.isnan(), float("nan"), distance)


def assert_ulp_close(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape and got.stride() == want.stride()
    if got.dtype not in ULPS:  # fp64: the fallbacks leave it to ATen
        with gems_aot.use_gems(include=[]):
            torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
        return
    with gems_aot.use_gems(include=[]):
        assert torch.equal(got.isnan(), want.isnan())
        distance = ulp_distance(got, want).nan_to_num(0.0)
        worst = distance.max().item() if distance.numel() else 0.0
        assert worst <= ULPS[got.dtype], (
            f"{int((distance > ULPS[got.dtype]).sum())} of {got.numel()} elements beyond {ULPS[got.dtype]} ulp "
            f"(worst {worst:.0f}); {int((distance > 0).sum())} differ at all")


def compare(a, b):
    (params_a, opt_a), (params_b, opt_b) = a, b
    for pa, pb in zip(params_a, params_b):
        assert_ulp_close(pa.detach(), pb.detach())
        sa, sb = opt_a.state[pa], opt_b.state[pb]
        assert sorted(sa) == sorted(sb)
        for key in sa:
            assert_ulp_close(sa[key], sb[key])


FLAGS = [dict(), dict(adamw=False), dict(amsgrad=True), dict(adamw=False, amsgrad=True, maximize=True),
         dict(maximize=True, weight_decay=0.0), dict(adamw=False, weight_decay=0.0),
         dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()) or "default")
def test_fused_step_matches_aten(dtype, flags):
    seed("step", dtype, flags)
    params = make_params(dtype)
    grads = grads_for(params)
    gems = run(params, grads, True, **flags)
    assert gems_aot.fallback_counts() == {}
    compare(gems, run(params, grads, False, **flags))


@pytest.mark.parametrize("lr_device", ["cpu", "cuda"])
def test_tensor_lr(lr_device):
    seed("lr", lr_device)
    params = make_params(torch.float32)
    grads = grads_for(params)
    options = dict(lr=torch.tensor(2e-3, device=lr_device), capturable=lr_device == "cuda")
    gems = run(params, grads, True, **options)
    assert gems_aot.fallback_counts() == {}
    compare(gems, run(params, grads, False, **options))


def direct_call(lists, steps, gems, betas=(0.9, 0.999), **kwargs):
    """aten::_fused_adamw_ on copies of the lists; returns them."""
    lists = [[t.clone() for t in ts] for ts in lists]
    steps = [s.clone() for s in steps]
    with gems_aot.use_gems(include=list(OVERLOADS) if gems else []):
        torch._fused_adamw_(*lists, steps, lr=1e-2, beta1=betas[0], beta2=betas[1], weight_decay=0.01, eps=1e-8,
                            maximize=False, **kwargs)
    return lists + [steps]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("found", [None, 0.0, 1.0])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_grad_scale_and_found_inf(dtype, found, amsgrad):
    """grad_scale unscales the grads (written back); found_inf == 1 leaves everything as it was."""
    seed("scale", dtype, found, amsgrad)
    params = make_params(dtype)
    lists = [params, *([[torch.randn_like(p) for p in params] for _ in range(2)]),
             [torch.rand_like(p) for p in params], [torch.rand_like(p) for p in params] if amsgrad else []]
    steps = [torch.tensor(3.0, device="cuda") for _ in params]
    kwargs = dict(amsgrad=amsgrad, grad_scale=torch.tensor(512.0, device="cuda"),
                  found_inf=None if found is None else torch.tensor(found, device="cuda"))
    got = direct_call(lists, steps, True, **kwargs)
    assert gems_aot.fallback_counts() == {}
    want = direct_call(lists, steps, False, **kwargs)
    for a, b in zip(got, want):
        for x, y in zip(a, b):
            assert_ulp_close(x, y)
    if found == 1.0:
        for a, b in zip(got, lists):
            for x, y in zip(a, b):
                assert torch.equal(x, y)


@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.95), (0.99, 0.9999)], ids=str)
def test_bias_corrections_of_many_steps(betas):
    """One tensor per step count (1 to 4000, then up to 2**24): the kernel's fp32 bias corrections,
    1 - powf(beta, step) through its transcription of CUDA 13's powf, are ATen's (that powf is off
    the correctly rounded power by an ulp for about 3% of the steps of beta 0.999; libdevice's
    powf, another algorithm, need not pick the same ulp)."""
    seed("steps", betas)
    counts = list(range(1, 4001)) + [5000, 10**4, 12345, 10**5, 87500, 10**6, 2**24]
    params = [torch.randn(16, device="cuda") for _ in counts]
    lists = [params, [torch.randn_like(p) for p in params], [torch.randn_like(p) for p in params],
             [torch.rand_like(p) for p in params], []]
    steps = [torch.tensor(float(c), device="cuda") for c in counts]
    got, want = (direct_call(lists, steps, gems, amsgrad=False, betas=betas) for gems in (True, False))
    assert gems_aot.fallback_counts() == {}
    for a, b in zip(got, want):
        if a:
            assert_ulp_close(torch.cat([t.reshape(-1) for t in a]), torch.cat([t.reshape(-1) for t in b]))


def test_one_launch_and_enable_serves_it():
    """With every override on, the step is one gems kernel (beside torch.optim's _foreach_add_ of
    the steps, ATen's)."""
    seed("launch")
    params = make_params(torch.bfloat16)
    opt = torch.optim.AdamW([torch.nn.Parameter(p) for p in params], fused=True)
    for p in opt.param_groups[0]["params"]:
        p.grad = torch.randn_like(p)
    gems_aot.enable()
    opt.step()  # the table is uploaded and cached
    names = cuda_kernel_names(opt.step)
    assert sum("adam_kernel" in n for n in names) == 1, names
    assert not any("FusedAdam" in n for n in names), names  # ATen's fused functor
    assert gems_aot.fallback_counts() == {}


def test_cuda_graph_capture():
    """The step captured in a CUDA graph (after eager warm-up steps, which cache the table) and
    replayed equals ATen's eager steps."""
    seed("graph")
    params = make_params(torch.float32, transposed=False)
    grads = grads_for(params, steps=6)
    ref, _ = run(params, grads, False, capturable=True)
    copies = [torch.nn.Parameter(p.clone()) for p in params]
    opt = torch.optim.AdamW(copies, fused=True, capturable=True)
    static = [torch.zeros_like(p) for p in params]
    for p, g in zip(copies, static):
        p.grad = g
    with gems_aot.use_gems(include=list(OVERLOADS)):
        for step in grads[:3]:
            for g, s in zip(step, static):
                s.copy_(g)
            opt.step()
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            opt.step()
        for step in grads[3:]:
            for g, s in zip(step, static):
                s.copy_(g)
            graph.replay()
    torch.cuda.synchronize()
    assert gems_aot.fallback_counts() == {}
    for a, b in zip(copies, ref):
        assert_ulp_close(a.detach(), b.detach())


def test_fallbacks_are_counted():
    """fp64 and a misaligned param run ATen's kernel (counted, same result); a list of mixed dtypes
    gets ATen's error either way."""
    seed("fallback")
    for dtype, params, reason in (
            (torch.float64, make_params(torch.float64), "dtype"),
            (torch.float32, make_params(torch.float32) + [torch.randn(1001, device="cuda")[1:]], "layout")):
        grads = grads_for(params)
        gems_aot.reset_fallback_counts()
        gems = run(params, grads, True)
        assert gems_aot.fallback_counts() == {("_fused_adamw_", reason): STEPS}
        compare(gems, run(params, grads, False))
    mixed = [torch.randn(4, device="cuda"), torch.randn(4, device="cuda").bfloat16()]
    lists = [mixed, [t.clone() for t in mixed], [torch.zeros_like(t) for t in mixed],
             [torch.zeros_like(t) for t in mixed], []]
    steps = [torch.tensor(1.0, device="cuda") for _ in mixed]
    errors = []
    for gems in (False, True):
        with pytest.raises(RuntimeError) as e:
            direct_call(lists, steps, gems, amsgrad=False)
        errors.append(str(e.value))
    assert errors[0] == errors[1]
    assert gems_aot.fallback_counts()[("_fused_adamw_", "mixed_dtype")] == 1


def test_gems_op_raises_where_it_has_no_kernel():
    p = [torch.randn(4, device="cuda", dtype=torch.float64)]
    with pytest.raises(RuntimeError, match="gems::_fused_adamw_: no gems kernel covers this input \\(dtype"):
        torch.ops.gems._fused_adamw_(p, [torch.randn_like(p[0])], [torch.zeros_like(p[0])], [torch.zeros_like(p[0])],
                                     [], [torch.tensor(1.0, device="cuda")], lr=1e-3, beta1=0.9, beta2=0.999,
                                     weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)
