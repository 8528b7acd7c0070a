"""GPU accuracy suite for bmm and baddbmm (docs/TESTING.md), against torch on float64 inputs:
the batched forms of the gemm family's kernels, with routing off as in tests/test_gemm_gpu.py."""

import zlib

import pytest
import torch

import gems_aot
from conftest import cuda_kernel_names, requires_gpu
from gemm_gpu_cases import (  # noqa: F401 - clean_state is an autouse fixture
    aten_error,
    clean_state,
    FLOATS,
    hopper,
    LAYOUTS,
    no_fallbacks,
    poison_next_alloc,
    RTOL,
    sm90_table,
    smallest_case_per_config,
    TF32_ATOL_PER_K,
    TF32_RTOL,
)

pytestmark = [requires_gpu, pytest.mark.gpu]


# (batch, M, N, K): batches of 1, 3 and 64; M, N or K of 1, 17 and 4097; empty problems.
BMM_SHAPES = [(1, 1, 1, 1), (3, 17, 33, 45), (3, 128, 256, 64), (64, 17, 17, 17), (64, 128, 128, 64),
              (3, 4097, 17, 64), (3, 24, 4097, 32), (3, 64, 48, 4097), (3, 1, 256, 64), (3, 64, 1, 64),
              (3, 64, 64, 1), (0, 5, 7, 9), (3, 0, 7, 9), (3, 5, 0, 9), (3, 5, 7, 0)]


def brand(batch, rows, cols, dtype, transposed=False):
    """A [batch, rows, cols] operand, each matrix row-major, or col-major (a transposed view)."""
    if transposed:
        return torch.randn(batch, cols, rows, device="cuda").to(dtype).transpose(1, 2)
    return torch.randn(batch, rows, cols, device="cuda").to(dtype)


def batched_operands(shape, dtype, layout):
    batch, M, N, K = shape
    return brand(batch, M, K, dtype, layout[0] == "t"), brand(batch, K, N, dtype, layout[1] == "t")


def check_bmm(res, a, b, tf32=False):
    """Values against the float64 reference; dtype, shape and strides (contiguous) as torch.bmm's."""
    batch, M, K = a.shape
    N = b.shape[2]
    assert res.dtype == a.dtype and res.shape == (batch, M, N) and res.device == a.device
    assert res.is_contiguous()
    with gems_aot.use_gems(include=[]):
        ref = (a.double() @ b.double()).to(res.dtype)
    rtol = TF32_RTOL if tf32 else RTOL[res.dtype]
    atol = (TF32_ATOL_PER_K if tf32 else 1e-4) * max(K, 1)
    torch.testing.assert_close(res, ref, rtol=rtol, atol=atol, equal_nan=True)


def gems_and_torch_bmm(a, b):
    """torch.bmm through the override and torch.ops.gems.bmm: the same kernel, bitwise equal."""
    shape = (a.shape[0], a.shape[1], b.shape[2])
    poison_next_alloc(shape, a.dtype)
    with gems_aot.use_gems(include=["bmm"]):
        res = torch.bmm(a, b)
    poison_next_alloc(shape, a.dtype)
    direct = torch.ops.gems.bmm(a, b)
    assert torch.equal(res, direct)
    return res


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", BMM_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_bmm(dtype, shape, layout):
    torch.manual_seed(zlib.crc32(f"bmm{dtype}{shape}{layout}".encode()))
    a, b = batched_operands(shape, dtype, layout)
    check_bmm(gems_and_torch_bmm(a, b), a, b)
    no_fallbacks()


@pytest.mark.parametrize("shape", [(3, 33, 17, 45), (8, 1024, 1024, 128)], ids=lambda s: "x".join(map(str, s)))
def test_bmm_fp32_tf32(shape):
    torch.manual_seed(11)
    a, b = batched_operands(shape, torch.float32, "nt")
    ieee = gems_and_torch_bmm(a, b)
    check_bmm(ieee, a, b)
    torch.backends.cuda.matmul.allow_tf32 = True
    tf32 = gems_and_torch_bmm(a, b)
    check_bmm(tf32, a, b, tf32=True)
    if shape[3] >= 128:
        assert not torch.equal(tf32, ieee)  # the flag reached the kernel
    no_fallbacks()


def odd_batch_stride(batch, rows, cols, dtype):
    """Matrices one element apart from dense: a batch stride that is no multiple of 16 bytes."""
    flat = torch.randn(batch * (rows * cols + 1), device="cuda").to(dtype)
    return flat.as_strided((batch, rows, cols), (rows * cols + 1, cols, 1))


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_bmm_expanded_and_strided_operands(dtype):
    """Operands expanded over the batch (batch stride 0; TMA reads one matrix), sliced ones
    (storage offsets, leading strides off 16 bytes), batch strides off 16 bytes and rows
    expanded (leading stride 0): the pointer kernel serves what TMA cannot describe."""
    torch.manual_seed(12)
    big = brand(5, 70, 90, dtype)
    cases = {
        "expanded_a": (brand(1, 48, 64, dtype).expand(5, 48, 64), brand(5, 64, 32, dtype)),
        "expanded_b": (brand(5, 48, 64, dtype), brand(1, 64, 32, dtype, transposed=True).expand(5, 64, 32)),
        "expanded_both": (brand(1, 48, 64, dtype).expand(5, 48, 64), brand(1, 64, 32, dtype).expand(5, 64, 32)),
        "expanded_rows": (brand(5, 1, 64, dtype).expand(5, 48, 64), brand(5, 64, 32, dtype)),
        "storage_offset": (big[:, 1:34, 3:48], big[:, 2:47, 1:18]),
        "padded": (brand(5, 48, 80, dtype)[:, :, :64], brand(5, 64, 48, dtype)[:, :, :32]),
        "odd_batch_stride": (odd_batch_stride(5, 48, 64, dtype), odd_batch_stride(5, 64, 32, dtype)),
        "batch_slice": (big[1:4, :32, :64], big[::2, :64, :48]),
    }
    for name, (a, b) in cases.items():
        check_bmm(gems_and_torch_bmm(a, b), a, b)
    no_fallbacks()


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_bmm_out(dtype):
    torch.manual_seed(13)
    a, b = brand(3, 33, 48, dtype), brand(3, 48, 40, dtype)
    with gems_aot.use_gems(include=["bmm"]):
        out = torch.empty(0, device="cuda", dtype=dtype)
        assert torch.bmm(a, b, out=out) is out
        check_bmm(out, a, b)
        out = torch.full((2, 2, 2), float("nan"), device="cuda", dtype=dtype)
        with pytest.warns(UserWarning, match="resized"):
            torch.bmm(a, b, out=out)
        check_bmm(out, a, b)
        # Outputs of the right size keep their strides, as torch keeps them.
        col_major = torch.full((3, 40, 33), float("nan"), device="cuda", dtype=dtype).transpose(1, 2)
        torch.bmm(a, b, out=col_major)
        assert col_major.stride() == (40 * 33, 1, 33)
        check_bmm(col_major.contiguous(), a, b)
        padded = torch.full((3, 35, 48), float("nan"), device="cuda", dtype=dtype)[:, 1:34, :40]
        torch.bmm(a, b, out=padded)
        assert padded.stride() == (35 * 48, 48, 1)
        check_bmm(padded.contiguous(), a, b)
        zeros = torch.full((3, 33, 40), float("nan"), device="cuda", dtype=dtype)
        torch.bmm(a[:, :, :0], b[:, :0], out=zeros)
        assert torch.equal(zeros, torch.zeros_like(zeros))
    no_fallbacks()


def test_bmm_out_uncovered_layouts_fall_back():
    torch.manual_seed(14)
    a, b = brand(3, 32, 32, torch.float32), brand(3, 32, 32, torch.float32)
    expected = torch.bmm(a, b)
    with gems_aot.use_gems(include=["bmm"]):
        strided = torch.full((3, 64, 64), float("nan"), device="cuda")[:, ::2, ::2]
        torch.bmm(a, b, out=strided)
    torch.testing.assert_close(strided, expected)
    # An out= aliasing an input gets ATen's own semantics, error or not.
    alias = a.clone()
    aten = aten_error(lambda: torch.bmm(alias, b, out=alias))
    alias = a.clone()
    with gems_aot.use_gems(include=["bmm"]):
        assert aten_error(lambda: torch.bmm(alias, b, out=alias)) == aten
    assert gems_aot.fallback_counts() == {("bmm.out", "layout"): 2}


def test_bmm_fallbacks_and_direct_errors():
    torch.manual_seed(15)
    cases = {
        "dtype": (brand(3, 33, 45, torch.float64), brand(3, 45, 17, torch.float64)),
        "layout": (brand(3, 66, 90, torch.float32)[:, ::2, ::2], brand(3, 45, 17, torch.float32)),
        # The pointer kernel's batch is its grid's y extent (exact fp32 runs the pointer kernel).
        "index64": (brand(70000, 2, 8, torch.float32), brand(70000, 8, 4, torch.float32)),
    }
    for reason, (a, b) in cases.items():
        gems_aot.reset_fallback_counts()
        expected = torch.bmm(a, b)
        with gems_aot.use_gems(include=["bmm"]):
            res = torch.bmm(a, b)
        assert torch.equal(res, expected), reason  # ATen's own kernel ran
        assert gems_aot.fallback_counts() == {("bmm", reason): 1}
        with pytest.raises(RuntimeError, match=rf"gems::bmm: no gems kernel covers this input \({reason}: "):
            torch.ops.gems.bmm(a, b)


@hopper
def test_bmm_many_batches_run_the_persistent_kernel():
    """70000 batches: past the pointer kernel's grid, no limit for the TMA kernel's work items."""
    torch.manual_seed(16)
    a, b = brand(70000, 16, 16, torch.bfloat16), brand(70000, 16, 16, torch.bfloat16, transposed=True)
    check_bmm(gems_and_torch_bmm(a, b), a, b)
    no_fallbacks()


def test_bmm_needs_64bit_batch_offsets():
    """The last matrix of A starts past 2**31 elements (int32 offsets would wrap): the TMA
    kernel's descriptors (K = 16384) and the pointer kernel's offsets (K = 16383, off 16 bytes)."""
    if torch.cuda.get_device_properties(0).total_memory < 24 * 2**30:
        pytest.skip("needs ~16 GB of GPU memory")
    torch.manual_seed(17)
    for K in (16384, 16383):
        M = 2**31 // (2 * K) + 512  # batch 2 starts at 2 * M * K > 2**31 elements
        a = torch.empty(3, M, K, device="cuda", dtype=torch.bfloat16)
        a[2, -512:].normal_()
        b = brand(3, K, 64, torch.bfloat16)
        res = torch.ops.gems.bmm(a, b)
        tail = res[2, -512:]
        with gems_aot.use_gems(include=[]):
            ref = (a[2, -512:].double() @ b[2].double()).to(torch.bfloat16)
        torch.testing.assert_close(tail, ref, rtol=1.6e-2, atol=1e-4 * K)
        del a, res
        torch.cuda.empty_cache()


@pytest.mark.parametrize(
    "case", ["batch", "inner", "dtypes", "rank_self", "rank_mat2", "int32", "cpu_operand", "out_dtype"])
def test_bmm_bad_input_gives_torchs_error(case):
    f32 = torch.float32
    a, b, out = brand(2, 3, 4, f32), brand(2, 4, 6, f32), None
    if case == "batch":
        b = brand(3, 4, 6, f32)
    elif case == "inner":
        b = brand(2, 5, 6, f32)
    elif case == "dtypes":
        b = brand(2, 4, 6, torch.float16)
    elif case == "rank_self":
        a = a[0]
    elif case == "rank_mat2":
        b = b[..., None]
    elif case == "int32":
        a, b = a.to(torch.int32), b.to(torch.int32)
    elif case == "cpu_operand":
        b = b.cpu()
    elif case == "out_dtype":
        out = torch.empty(2, 3, 6, device="cuda", dtype=torch.float16)
    call = (lambda: torch.bmm(a, b)) if out is None else (lambda: torch.bmm(a, b, out=out))
    expected = aten_error(call)
    with gems_aot.use_gems(include=["bmm"]):
        got = aten_error(call)
    assert got == expected
    if case in ("batch", "inner", "dtypes", "rank_self", "rank_mat2"):
        # torch.ops.gems.bmm raises torch's message (ATen's checks; the CPU kernel's words for
        # mixed dtypes, which the Meta function gives too).
        reference = aten_error(lambda: torch.bmm(a.cpu(), b.cpu()))
        assert reference is not None
        with pytest.raises(reference[0]) as e:
            torch.ops.gems.bmm(a, b)
        assert str(e.value) == reference[1]


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_bmm_autograd(dtype):
    """bmm's backward is bmm with transposed operands: grad @ B^T and A^T @ grad."""
    torch.manual_seed(18)
    a = brand(3, 33, 48, dtype).requires_grad_()
    b = brand(3, 48, 64, dtype).requires_grad_()
    grad = brand(3, 33, 64, dtype)
    torch.bmm(a, b).backward(grad)
    expected = a.grad, b.grad
    a.grad = b.grad = None
    with gems_aot.use_gems(include=["bmm"]):
        out = torch.bmm(a, b)
        out.backward(grad)
    check_bmm(out.detach(), a.detach(), b.detach())
    rtol, atol = RTOL[dtype], 1e-4 * 64
    torch.testing.assert_close(a.grad, expected[0], rtol=max(rtol, 1e-5), atol=atol)
    torch.testing.assert_close(b.grad, expected[1], rtol=max(rtol, 1e-5), atol=atol)
    no_fallbacks()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_attention_through_matmul(dtype):
    """torch.matmul on [batch, heads, seq, dim] tensors reaches bmm (scores with K transposed,
    then the weighted sum of V), forward and backward."""
    torch.manual_seed(19)
    q, k, v = (torch.randn(2, 8, 200, 64, device="cuda").to(dtype).requires_grad_() for _ in range(3))
    grad = torch.randn(2, 8, 200, 64, device="cuda").to(dtype)

    def attention():
        return ((q @ k.transpose(-1, -2)) / 8).softmax(-1) @ v

    ref = attention()
    ref.backward(grad)
    ref_grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    with gems_aot.use_gems(include=["bmm"]):
        out = attention()
        out.backward(grad)
    torch.testing.assert_close(out, ref, rtol=RTOL[dtype], atol=1e-2)
    for got, want in zip((q.grad, k.grad, v.grad), ref_grads):
        torch.testing.assert_close(got, want, rtol=RTOL[dtype], atol=5e-2)
    no_fallbacks()


def check_baddbmm(res, self, a, b, beta, alpha, tf32=False):
    K = a.shape[2]
    with gems_aot.use_gems(include=[]):
        product = a.double() @ b.double()
        ref = alpha * product if beta == 0 else alpha * product + beta * self.double()
        ref = ref.to(res.dtype)
    assert res.dtype == a.dtype and res.shape == ref.shape
    rtol = TF32_RTOL if tf32 else RTOL[res.dtype]
    atol = (TF32_ATOL_PER_K if tf32 else 1e-4) * K * 4
    torch.testing.assert_close(res, ref, rtol=rtol, atol=atol, equal_nan=True)


def self_forms(batch, M, N, dtype):
    """baddbmm's self in every form torch broadcasts to [batch, M, N]."""
    r = lambda *s: torch.randn(*s, device="cuda").to(dtype)  # noqa: E731
    return {"full": r(batch, M, N), "padded": r(batch, M + 1, N + 8)[:, 1:, :N],
            "transposed": r(batch, N, M).transpose(1, 2), "matrix": r(M, N), "batch_rows": r(batch, 1, N),
            "row": r(N), "strided_row": r(2 * N)[::2], "column": r(M, 1), "batch_column": r(batch, M, 1),
            "scalar": r(1), "zero_dim": r(())}


# Sizes whose leading strides are 16-byte multiples in every layout: what TMA, and so the
# epilogue, serves (test_baddbmm_what_aten_keeps has the others).
BADDBMM_SHAPES = [(3, 40, 48, 56), (64, 128, 128, 64), (1, 1000, 1000, 128), (2, 24, 4104, 16)]


@hopper
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_baddbmm_self_forms(dtype, layout):
    torch.manual_seed(zlib.crc32(f"baddbmm{dtype}{layout}".encode()))
    for shape in BADDBMM_SHAPES:
        a, b = batched_operands(shape, dtype, layout)
        for form, self in self_forms(shape[0], shape[1], shape[2], dtype).items():
            for beta, alpha in ((1, 1), (-2.0, 0.5), (0, 3.0)):
                poison_next_alloc(shape[:3], dtype)
                with gems_aot.use_gems(include=["baddbmm"]):
                    res = torch.baddbmm(self, a, b, beta=beta, alpha=alpha)
                check_baddbmm(res, self, a, b, beta, alpha)
                assert res.is_contiguous()
                assert torch.equal(res, torch.ops.gems.baddbmm(self, a, b, beta=beta, alpha=alpha)), (shape, form)
    no_fallbacks()


@hopper
def test_baddbmm_fp32_tf32():
    torch.manual_seed(20)
    torch.backends.cuda.matmul.allow_tf32 = True
    a, b = batched_operands((4, 96, 80, 256), torch.float32, "nt")
    for form, self in self_forms(4, 96, 80, torch.float32).items():
        with gems_aot.use_gems(include=["baddbmm"]):
            res = torch.baddbmm(self, a, b, beta=0.5, alpha=-1.5)
        check_baddbmm(res, self, a, b, 0.5, -1.5, tf32=True)
    no_fallbacks()


@hopper
def test_baddbmm_beta_zero_ignores_nan_self():
    a, b = batched_operands((3, 64, 64, 64), torch.bfloat16, "nt")
    nan = torch.full((3, 64, 64), float("nan"), device="cuda", dtype=torch.bfloat16)
    with gems_aot.use_gems(include=["baddbmm"]):
        res = torch.baddbmm(nan, a, b, beta=0, alpha=2)
        in_place = nan.clone()
        assert in_place.baddbmm_(a, b, beta=0, alpha=2) is in_place
    assert not res.isnan().any() and not in_place.isnan().any()
    check_baddbmm(res, nan, a, b, 0, 2)
    assert torch.equal(in_place, res)
    no_fallbacks()


@hopper
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_baddbmm_in_place_and_out(dtype):
    """baddbmm_ reads each element of self before its tile overwrites it; out= is allocated or
    resized as torch does, a col-major one is the transposed problem (self's strides swapped), an
    out= that is self itself is baddbmm_."""
    torch.manual_seed(21)
    a, b = batched_operands((3, 96, 80, 64), dtype, "tn")
    self = torch.randn(3, 96, 80, device="cuda").to(dtype)
    with gems_aot.use_gems(include=["baddbmm"]):
        x = self.clone()
        assert x.baddbmm_(a, b, beta=-1.5, alpha=0.5) is x
        check_baddbmm(x, self, a, b, -1.5, 0.5)
        col = self.transpose(1, 2).contiguous().transpose(1, 2)  # self's values, col-major matrices
        assert col.baddbmm_(a, b, beta=-1.5, alpha=0.5) is col and col.stride() == (80 * 96, 1, 96)
        check_baddbmm(col, self, a, b, -1.5, 0.5)
        out = torch.empty(0, device="cuda", dtype=dtype)
        assert torch.baddbmm(self, a, b, beta=2, out=out) is out
        check_baddbmm(out, self, a, b, 2, 1)
        out = torch.full((2, 2), float("nan"), device="cuda", dtype=dtype)
        with pytest.warns(UserWarning, match="resized"):
            torch.baddbmm(self[0], a, b, out=out)
        check_baddbmm(out, self[0], a, b, 1, 1)
        col_out = torch.full((3, 80, 96), float("nan"), device="cuda", dtype=dtype).transpose(1, 2)
        torch.baddbmm(self, a, b, beta=0.5, out=col_out)
        assert col_out.stride() == (80 * 96, 1, 96)
        check_baddbmm(col_out, self, a, b, 0.5, 1)
        same = self.clone()
        torch.baddbmm(same, a, b, beta=3, out=same)
        check_baddbmm(same, self, a, b, 3, 1)
        zeros = torch.full((3, 96, 80), float("nan"), device="cuda", dtype=dtype)
        torch.baddbmm(self, a[:, :, :0], b[:, :0], beta=0, out=zeros)  # K = 0, beta = 0
        assert torch.equal(zeros, torch.zeros_like(zeros))
    no_fallbacks()


@hopper
def test_baddbmm_is_one_gems_kernel():
    """The epilogue runs in the kernel: a scaled, masked attention score is one launch, with no
    elementwise kernel."""
    torch.manual_seed(22)
    q, k = brand(32, 256, 64, torch.bfloat16), brand(32, 256, 64, torch.bfloat16)
    mask = torch.randn(32, 1, 256, device="cuda").to(torch.bfloat16)
    with gems_aot.use_gems(include=["baddbmm"]):
        names = cuda_kernel_names(lambda: torch.baddbmm(mask, q, k.transpose(1, 2), alpha=0.125))
        res = torch.baddbmm(mask, q, k.transpose(1, 2), alpha=0.125)
    assert any("mm_tma_kernel" in n for n in names), names
    assert all("mm_tma_kernel" in n or "memset" in n.lower() for n in names), names
    check_baddbmm(res, mask, q, k.transpose(1, 2), 1, 0.125)
    no_fallbacks()


def test_baddbmm_what_aten_keeps():
    """Operands TMA cannot describe, exact fp32 (the pointer kernel has no epilogue), K = 0 with
    beta != 0, an out= overlapping an input and mixed dtypes go to ATen, counted; the results (or
    errors) are ATen's."""
    torch.manual_seed(23)
    a16, b16 = batched_operands((3, 33, 17, 45), torch.bfloat16, "nn")
    self16 = torch.randn(3, 33, 17, device="cuda", dtype=torch.bfloat16)
    cases = {
        "args": [(self16, a16, b16),  # K = 45: no TMA
                 (self16.float(), a16.float(), b16.float()),
                 (self16, a16[:, :, :0], b16[:, :0])],
        "mixed_dtype": [(self16.float(), a16, b16), (self16, a16, b16.half())],
    }
    for reason, calls in cases.items():
        for args in calls:
            gems_aot.reset_fallback_counts()
            expected = aten_error(lambda: torch.baddbmm(*args, beta=0.5))
            with gems_aot.use_gems(include=["baddbmm"]):
                got = aten_error(lambda: torch.baddbmm(*args, beta=0.5))
            assert got == expected
            if expected is None:
                with gems_aot.use_gems(include=["baddbmm"]):
                    res = torch.baddbmm(*args, beta=0.5)
                assert torch.equal(res, torch.baddbmm(*args, beta=0.5))
            assert set(gems_aot.fallback_counts()) == {("baddbmm", reason)}, (reason, args[0].shape)
    # An out= that is batch1 itself gets ATen's own semantics, error or not.
    gems_aot.reset_fallback_counts()
    a, b = batched_operands((3, 32, 32, 32), torch.bfloat16, "nn")
    column = torch.randn(3, 32, 1, device="cuda", dtype=torch.bfloat16)
    alias = a.clone()
    aten = aten_error(lambda: torch.baddbmm(column, alias, b, out=alias))
    alias = a.clone()
    with gems_aot.use_gems(include=["baddbmm"]):
        assert aten_error(lambda: torch.baddbmm(column, alias, b, out=alias)) == aten
    assert gems_aot.fallback_counts() == {("baddbmm.out", "layout"): 1}


@pytest.mark.parametrize(
    "case", ["batch", "rank", "self_shape", "self_batch", "self_dtype", "dtypes", "cpu_self", "in_place_shape"])
def test_baddbmm_bad_input_gives_torchs_error(case):
    bf = torch.bfloat16
    self, a, b = torch.randn(2, 3, 6, device="cuda", dtype=bf), brand(2, 3, 4, bf), brand(2, 4, 6, bf)
    if case == "batch":
        b = brand(3, 4, 6, bf)
    elif case == "rank":
        a = a[0]
    elif case == "self_shape":
        self = torch.randn(2, 3, 5, device="cuda", dtype=bf)
    elif case == "self_batch":
        self = torch.randn(4, 3, 6, device="cuda", dtype=bf)
    elif case == "self_dtype":
        self = self.float()
    elif case == "dtypes":
        b = b.half()
    elif case == "cpu_self":
        self = self.cpu()
    if case == "in_place_shape":
        call = lambda: self[0].clone().baddbmm_(a, b)  # noqa: E731
    else:
        call = lambda: torch.baddbmm(self, a, b)  # noqa: E731
    expected = aten_error(call)
    with gems_aot.use_gems(include=["baddbmm"]):
        got = aten_error(call)
    assert expected is not None and got == expected


@hopper
@pytest.mark.parametrize("klass", ["16bit", "tf32"])
def test_every_table_configuration_is_exact_batched(klass):
    """Each configuration the build compiled (split-K ones included) on a shape its bucket picks,
    batched: bmm, and baddbmm (the full epilogue in its finer slices) with a full self."""
    table = sm90_table()
    dtype = torch.bfloat16 if klass == "16bit" else torch.float32
    torch.backends.cuda.matmul.allow_tf32 = klass == "tf32"
    for config, (m, n, k, layout) in smallest_case_per_config(table, klass).items():
        torch.manual_seed(config)
        a, b = batched_operands((2, m, n, k), dtype, layout)
        names = cuda_kernel_names(lambda: torch.ops.gems.bmm(a, b))
        assert any("mm_tma_kernel" in n for n in names), (table["classes"][klass]["config_names"][config], names)
        check_bmm(gems_and_torch_bmm(a, b), a, b, tf32=klass == "tf32")
        self = torch.randn(2, m, n, device="cuda").to(dtype)
        with gems_aot.use_gems(include=["baddbmm"]):
            res = torch.baddbmm(self, a, b, beta=-0.5, alpha=2)
        check_baddbmm(res, self, a, b, -0.5, 2, tf32=klass == "tf32")
    no_fallbacks()


@hopper
def test_bmm_routing_follows_the_mm_table():
    """Batched problems take the mm table's decision for their (M, N, K): a routed bucket runs
    cuBLAS through the override (counted as tuned_to_aten), a served one gems' kernel."""
    table = sm90_table()
    rows = [r for r in table["rows"] if r["class"] == "16bit"]
    routed = next((r for r in rows if r["aten"]), None)
    served = next((r for r in rows if not r["aten"]), None)
    torch.ops.gems._set_gemm_routing(True)
    if routed:
        a, b = batched_operands((2, routed["m"], routed["n"], routed["k"]), torch.bfloat16, routed["layout"])
        expected = torch.bmm(a, b)
        with gems_aot.use_gems(include=["bmm"]):
            assert torch.equal(torch.bmm(a, b), expected)
        assert gems_aot.fallback_counts() == {("bmm", "tuned_to_aten"): 1}
        gems_aot.reset_fallback_counts()
    if served:
        a, b = batched_operands((2, served["m"], served["n"], served["k"]), torch.bfloat16, served["layout"])
        with gems_aot.use_gems(include=["bmm"]):
            names = cuda_kernel_names(lambda: torch.bmm(a, b))
        assert any("mm_tma_kernel" in n for n in names), names
        no_fallbacks()
