"""GPU accuracy suite for addmv / mv, dot and vdot (../shared/TESTING.md), against float64
references that ATen computes with gems off; tolerances scale atol with K."""

import zlib

import pytest
import torch

import gems_aot
from conftest import cuda_kernel_names, requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]

FLOATS = [torch.float32, torch.float16, torch.bfloat16]
RTOL = {torch.float32: 1.3e-6, torch.float16: 1e-3, torch.bfloat16: 1.6e-2}
# (M, K): empty, one row (a dot), one column, partial blocks, split K, decode-sized layers.
SHAPES = [(0, 5), (5, 0), (1, 1), (1, 4097), (17, 1), (17, 17), (17, 11008), (4097, 17), (4097, 4097),
          (11008, 4096), (4096, 11008), (32000, 2048)]
LAYOUTS = ["row", "col"]
SCALARS = [(1, 1), (0.001, -0.999), (100.001, -111.999), (-2.0, 0)]  # (alpha, beta)


@pytest.fixture(autouse=True)
def clean_counts():
    gems_aot.reset_fallback_counts()


def seed(*key):
    torch.manual_seed(zlib.crc32(repr(key).encode()))


def matrix(M, K, dtype, layout="row"):
    if layout == "row":
        return torch.randn(M, K, device="cuda").to(dtype)
    return torch.randn(K, M, device="cuda").to(dtype).t()


def vector(n, dtype, stride=1):
    return torch.randn(max(n * stride, 1), device="cuda").to(dtype)[::stride][:n]


def poison_next_alloc(n, dtype):
    """Frees a NaN-filled block of the output's size: the caching allocator hands it out next, so
    an element the kernel does not write fails the comparison."""
    torch.full((n,), float("nan"), device="cuda", dtype=dtype)


def check(res, a, x, bias=None, alpha=1, beta=0):
    """Values against the float64 reference; dtype, shape and device as torch.addmv's."""
    M, K = a.shape
    assert res.dtype == a.dtype and res.shape == (M,) and res.device == a.device
    with gems_aot.use_gems(include=[]):  # the reference is ATen's, whatever gems' state
        ref = alpha * (a.double() @ x.double())
        if beta != 0:
            ref = ref + beta * bias.double()
        ref = ref.to(res.dtype)
    torch.testing.assert_close(res, ref, rtol=RTOL[res.dtype], atol=1e-4 * max(K, 1), equal_nan=True)


def check_dot(res, a, b):
    assert res.dtype == a.dtype and res.shape == () and res.device == a.device
    with gems_aot.use_gems(include=[]):
        ref = (a.double() @ b.double()).to(res.dtype)
    torch.testing.assert_close(res, ref, rtol=RTOL[res.dtype], atol=1e-4 * max(a.numel(), 1))


def no_fallbacks():
    assert gems_aot.fallback_counts() == {}


def aten_error(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - any error type torch raises is the expected one
        return type(e), str(e)
    return None


def gems_and_torch_mv(a, x):
    """torch.mv through the overrides (mv's composite calls addmv_) and torch.ops.gems.mv: the same
    kernels, bitwise equal."""
    poison_next_alloc(a.shape[0], a.dtype)
    with gems_aot.use_gems(include=["addmv"]):
        res = torch.mv(a, x)
    poison_next_alloc(a.shape[0], a.dtype)
    assert torch.equal(res, torch.ops.gems.mv(a, x))
    return res


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_mv(dtype, shape, layout):
    seed("mv", dtype, shape, layout)
    a, x = matrix(*shape, dtype, layout), vector(shape[1], dtype)
    check(gems_and_torch_mv(a, x), a, x)
    no_fallbacks()


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_mv_sliced_strided_and_expanded(dtype):
    """Unaligned pointers, padded and odd leading strides (the general variants), expanded rows and
    columns (leading stride 0), one-row matrices with strided columns, and x strided, expanded or
    offset."""
    seed("mv_views", dtype)
    big = matrix(70, 90, dtype)
    matrices = {
        "storage_offset": big[1:34, 3:48],
        "storage_offset_t": big.t()[5:50, 7:40],
        "padded": matrix(48, 80, dtype)[:, :64],
        "padded_t": matrix(80, 48, dtype)[:64].t(),
        "expanded_rows": matrix(1, 64, dtype).expand(48, 64),
        "expanded_columns": matrix(48, 1, dtype).expand(48, 64),
        "one_row_strided": big[:64, 2][None, :],
        "one_column": big[:48, 5:6],
    }
    for name, a in matrices.items():
        K = a.shape[1]
        vectors = {"contiguous": vector(K, dtype), "strided": vector(K, dtype, stride=3),
                   "expanded": vector(1, dtype).expand(K), "offset": vector(K + 1, dtype)[1:]}
        for x in vectors.values():
            check(gems_and_torch_mv(a, x), a, x)
    no_fallbacks()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_addmv(dtype, layout):
    """alpha * A @ x + beta * self with self contiguous, strided, one element ((1,) or 0-d),
    expanded; the override and torch.ops.gems.addmv bitwise equal."""
    for shape in [(33, 45), (17, 11008), (4096, 4096), (1, 777)]:
        seed("addmv", dtype, layout, shape)
        M, K = shape
        a, x = matrix(M, K, dtype, layout), vector(K, dtype)
        selves = {"vector": vector(M, dtype), "strided": vector(M, dtype, stride=2), "one": vector(1, dtype),
                  "scalar": vector(1, dtype)[0], "expanded": vector(1, dtype).expand(M)}
        for name, bias in selves.items():
            for alpha, beta in SCALARS:
                poison_next_alloc(M, dtype)
                with gems_aot.use_gems(include=["addmv"]):
                    res = torch.addmv(bias, a, x, beta=beta, alpha=alpha)
                check(res, a, x, bias, alpha, beta)
                assert torch.equal(res, torch.ops.gems.addmv(bias, a, x, beta=beta, alpha=alpha)), name
    no_fallbacks()


def test_addmv_beta_zero_ignores_nan_self():
    seed("nan_self")
    for layout in LAYOUTS:
        for M, K in [(64, 64), (4096, 4096), (1, 100), (7, 0)]:
            a, x = matrix(M, K, torch.bfloat16, layout), vector(K, torch.bfloat16)
            bias = torch.full((M,), float("nan"), device="cuda", dtype=torch.bfloat16)
            with gems_aot.use_gems(include=["addmv"]):
                res = torch.addmv(bias, a, x, beta=0, alpha=2)
            assert not res.isnan().any()
            check(res, a, x, alpha=2)
    no_fallbacks()


def test_addmv_empty_k_is_beta_self():
    """K = 0 leaves beta * self (alpha, even inf, does not enter, as in ATen)."""
    a, x = matrix(6, 0, torch.float32), vector(0, torch.float32)
    bias = vector(6, torch.float32)
    with gems_aot.use_gems(include=["addmv"]):
        res = torch.addmv(bias, a, x, beta=-0.5, alpha=float("inf"))
        zeros = torch.addmv(bias, a, x, beta=0, alpha=2)
    torch.testing.assert_close(res, -0.5 * bias)
    assert torch.equal(zeros, torch.zeros_like(bias))
    no_fallbacks()


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_addmv_out_and_in_place(dtype):
    seed("out", dtype)
    M, K = 33, 300
    a, x, bias = matrix(M, K, dtype, "col"), vector(K, dtype), vector(M, dtype)
    with gems_aot.use_gems(include=["addmv"]):
        out = torch.empty(0, device="cuda", dtype=dtype)
        assert torch.addmv(bias, a, x, beta=0.5, alpha=2, out=out) is out
        check(out, a, x, bias, 2, 0.5)
        out = torch.full((2, 2), float("nan"), device="cuda", dtype=dtype)
        with pytest.warns(UserWarning, match="resized"):
            torch.addmv(bias, a, x, out=out)
        check(out, a, x, bias, 1, 1)
        # An out= of the right size keeps its strides, as torch keeps them.
        strided = torch.full((2 * M,), float("nan"), device="cuda", dtype=dtype)[::2]
        torch.addmv(bias, a, x, beta=-1, out=strided)
        assert strided.stride() == (2,)
        check(strided, a, x, bias, 1, -1)
        # out= self exactly, and the in-place form (each row reads self before writing it).
        expected_self = bias.clone()
        same = bias.clone()
        torch.addmv(same, a, x, beta=3, alpha=0.5, out=same)
        check(same, a, x, expected_self, 0.5, 3)
        in_place = bias.clone()
        assert in_place.addmv_(a, x, beta=-2, alpha=1.5) is in_place
        check(in_place, a, x, expected_self, 1.5, -2)
        split = vector(4096, dtype)  # split K: the finish pass reads self and writes it
        expected_split = split.clone()
        big, bx = matrix(4096, 4096, dtype, "col"), vector(4096, dtype)
        split.addmv_(big, bx, beta=0.25)
        check(split, big, bx, expected_split, 1, 0.25)
        # mv's out= form: its composite calls addmv.out with a fresh self.
        mv_out = torch.full((5,), float("nan"), device="cuda", dtype=dtype)
        with pytest.warns(UserWarning, match="resized"):
            torch.mv(a, x, out=mv_out)
        check(mv_out, a, x)
    no_fallbacks()


def test_out_overlapping_an_input_falls_back():
    """An out= sharing memory with A or x, or overlapping self partially while beta reads it, gets
    ATen's own semantics (error or not), counted; with beta = 0 self is never read and gems serves
    the partial overlap."""

    def inputs():
        torch.manual_seed(0)
        return matrix(64, 64, torch.float32), vector(64, torch.float32), vector(65, torch.float32)

    cases = {"out_is_x": lambda a, x, s: (s[:64], a, x, x), "out_in_a": lambda a, x, s: (s[:64], a, x, a[0]),
             "out_overlaps_self": lambda a, x, s: (s[:64], a, x, s[1:])}
    for name, make in cases.items():
        gems_aot.reset_fallback_counts()
        bias, a, x, out = make(*inputs())
        expected = aten_error(lambda: torch.addmv(bias, a, x, out=out))
        bias, a, x, out = make(*inputs())
        with gems_aot.use_gems(include=["addmv"]):
            got = aten_error(lambda: torch.addmv(bias, a, x, out=out))
        assert got == expected, name
        assert gems_aot.fallback_counts() == {("addmv.out", "layout"): 1}, name
    gems_aot.reset_fallback_counts()
    a, x, s = inputs()
    with gems_aot.use_gems(include=["addmv"]):
        torch.addmv(s[:64], a, x, beta=0, out=s[1:])
    check(s[1:], a, x)
    no_fallbacks()


@pytest.mark.parametrize("n", [0, 1, 17, 4097, 11008, 1 << 20, 3_000_001])
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_dot_and_vdot(dtype, n):
    """dot and vdot (real: the same) on contiguous, strided, expanded and offset vectors, through
    the overrides and torch.ops.gems, bitwise equal."""
    seed("dot", dtype, n)
    pairs = {"contiguous": (vector(n, dtype), vector(n, dtype)),
             "strided": (vector(n, dtype, stride=3), vector(n, dtype, stride=2)),
             "expanded": (vector(1, dtype).expand(n), vector(n, dtype)),
             "offset": (vector(n + 1, dtype)[1:], vector(n, dtype))}
    for name, (a, b) in pairs.items():
        with gems_aot.use_gems(include=["dot", "vdot"]):
            res, res_v = torch.dot(a, b), torch.vdot(a, b)
        check_dot(res, a, b)
        assert torch.equal(res, res_v) and torch.equal(res, torch.ops.gems.dot(a, b)), name
        assert torch.equal(res, torch.ops.gems.vdot(a, b)), name
    no_fallbacks()


def test_dot_out():
    """dot.out has no CUDA kernel of its own: its composite reaches the dot override."""
    a, b = vector(1000, torch.bfloat16), vector(1000, torch.bfloat16)
    out = torch.full((), float("nan"), device="cuda", dtype=torch.bfloat16)
    with gems_aot.use_gems(include=["dot"]):
        assert torch.dot(a, b, out=out) is out
    check_dot(out, a, b)
    no_fallbacks()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_split_k_runs_gemv_finish_deterministically(layout):
    """Few row blocks (column-major A, long dots) split K: the partials are summed by gemv_finish
    in a fixed order, so repeated calls are bitwise equal."""
    a, x = matrix(4096, 4096, torch.bfloat16, layout), vector(4096, torch.bfloat16)
    names = cuda_kernel_names(lambda: torch.ops.gems.mv(a, x))
    assert any("gemv_kernel" in n for n in names), names
    assert any("gemv_finish" in n for n in names) == (layout == "col"), names
    first = torch.ops.gems.mv(a, x)
    for _ in range(3):
        assert torch.equal(torch.ops.gems.mv(a, x), first)
    v, w = vector(1 << 22, torch.float32), vector(1 << 22, torch.float32)
    names = cuda_kernel_names(lambda: torch.ops.gems.dot(v, w))
    assert any("gemv_finish" in n for n in names), names
    dot = torch.ops.gems.dot(v, w)
    assert all(torch.equal(torch.ops.gems.dot(v, w), dot) for _ in range(3))


def test_split_k_in_a_cuda_graph():
    """The split workspace is allocated inside the capture; a replay on new data is right."""
    a, x = matrix(4096, 2048, torch.bfloat16, "col"), vector(2048, torch.bfloat16)
    torch.ops.gems.mv(a, x)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = torch.ops.gems.mv(a, x)
    for s in range(3):
        torch.manual_seed(s)
        a.copy_(torch.randn_like(a))
        graph.replay()
        torch.cuda.synchronize()
        check(y, a, x)


def test_needs_64bit_offsets():
    """A has more than 2**31 elements (int32 offsets would wrap), in both layouts."""
    M, K = 140_000, 16_384
    if torch.cuda.get_device_properties(0).total_memory < 3 * M * K * 2:
        pytest.skip("needs ~14 GB of GPU memory")
    seed("64bit")
    x = vector(K, torch.bfloat16)
    tail = slice(M - 512, M)
    for layout in LAYOUTS:
        shape = (M, K) if layout == "row" else (K, M)
        a = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
        a = a if layout == "row" else a.t()
        res = torch.ops.gems.mv(a, x)
        check(res[tail], a[tail], x)
        del a, res
        torch.cuda.empty_cache()


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_autograd(dtype):
    """matmul of a matrix and a vector is mv; its backward takes the vector's gradient as
    mv(A^T, grad), a column-major product (and the matrix's as an outer product, ATen's)."""
    seed("autograd", dtype)
    a = matrix(300, 500, dtype).requires_grad_()
    x = vector(500, dtype).requires_grad_()
    grad = vector(300, dtype)
    torch.matmul(a, x).backward(grad)
    outer = a.grad
    a.grad = x.grad = None
    with gems_aot.use_gems(include=["addmv"]):
        out = torch.matmul(a, x)
        out.backward(grad)
    check(out.detach(), a.detach(), x.detach())
    check(x.grad, a.detach().t(), grad)
    assert torch.equal(a.grad, outer)
    no_fallbacks()


def test_fallbacks_and_direct_errors():
    """fp64, integers, complex and A with no unit stride run ATen's kernels (the same result or
    error), counted; the gems ops raise a clear error instead."""
    seed("fallbacks")
    f64 = (matrix(33, 45, torch.float64), vector(45, torch.float64))
    strided = (matrix(66, 90, torch.float32)[::2, ::2], vector(45, torch.float32))
    for reason, (a, x) in {"dtype": f64, "layout": strided}.items():
        gems_aot.reset_fallback_counts()
        expected = torch.mv(a, x)
        with gems_aot.use_gems(include=["addmv"]):
            assert torch.equal(torch.mv(a, x), expected)
        assert gems_aot.fallback_counts() == {("addmv_", reason): 1}
        with pytest.raises(RuntimeError, match=rf"gems::mv: no gems kernel covers this input \({reason}: "):
            torch.ops.gems.mv(a, x)
    gems_aot.reset_fallback_counts()
    c, d = torch.randn(100, device="cuda", dtype=torch.complex64), torch.randn(100, device="cuda",
                                                                                dtype=torch.complex64)
    expected = torch.vdot(c, d), torch.dot(c.conj(), d)
    with gems_aot.use_gems(include=["dot", "vdot"]):
        assert torch.equal(torch.vdot(c, d), expected[0]) and torch.equal(torch.dot(c.conj(), d), expected[1])
    assert gems_aot.fallback_counts() == {("vdot", "dtype"): 1, ("dot", "dtype"): 1}
    with pytest.raises(RuntimeError, match=r"gems::vdot: no gems kernel covers this input \(dtype: "):
        torch.ops.gems.vdot(c, d)
    i = torch.arange(10, device="cuda", dtype=torch.int32)
    expected = aten_error(lambda: torch.dot(i, i))
    with gems_aot.use_gems(include=["dot"]):
        assert aten_error(lambda: torch.dot(i, i)) == expected


@pytest.mark.parametrize("case", ["shapes", "dtypes", "self_dtype", "rank", "self_size", "cpu_vec", "out_dtype",
                                  "in_place_shape"])
def test_addmv_bad_input_gives_torchs_error(case):
    f32 = torch.float32
    bias, a, x, out = vector(3, f32), matrix(3, 4, f32), vector(4, f32), None
    if case == "shapes":
        x = vector(5, f32)
    elif case == "dtypes":
        x = vector(4, torch.float16)
    elif case == "self_dtype":
        bias = vector(3, torch.bfloat16)
    elif case == "rank":
        a = a[..., None]
    elif case == "self_size":
        bias = vector(2, f32)
    elif case == "cpu_vec":
        x = x.cpu()
    elif case == "out_dtype":
        out = torch.empty(3, device="cuda", dtype=torch.float16)
    if case == "in_place_shape":
        bias = vector(1, f32)
        call = lambda: bias.addmv_(a, x)  # noqa: E731 - self (1,) broadcasts, but in place it must be (3,)
    else:
        call = (lambda: torch.addmv(bias, a, x)) if out is None else (lambda: torch.addmv(bias, a, x, out=out))
    expected = aten_error(call)
    with gems_aot.use_gems(include=["addmv"]):
        got = aten_error(call)
    # The override raises exactly when ATen does, with its error: mixed dtypes are ATen's to
    # accept or reject (torch 2.11 accepts a self of another dtype and words the check differently).
    assert got == expected
    mixed = case in ("dtypes", "self_dtype")
    assert mixed or expected is not None
    if mixed and (expected is None or "must have the same dtype" not in expected[1]):
        with pytest.raises(RuntimeError, match="addmv input tensors must have the same dtype"):
            torch.ops.gems.addmv(bias, a, x)
    elif case in ("shapes", "dtypes", "self_dtype", "rank", "self_size"):
        with pytest.raises(expected[0]) as e:
            torch.ops.gems.addmv(bias, a, x)
        assert str(e.value) == expected[1]


@pytest.mark.parametrize("case", ["rank", "size", "dtype", "cpu_other"])
def test_dot_bad_input_gives_torchs_error(case):
    a, b = vector(3, torch.float32), vector(3, torch.float32)
    if case == "rank":
        b = b[:, None]
    elif case == "size":
        b = vector(4, torch.float32)
    elif case == "dtype":
        b = b.half()
    elif case == "cpu_other":
        b = b.cpu()
    for op in (torch.dot, torch.vdot):
        expected = aten_error(lambda: op(a, b))
        with gems_aot.use_gems(include=["dot", "vdot"]):
            got = aten_error(lambda: op(a, b))
        assert expected is not None and got == expected
    if case != "cpu_other":
        with pytest.raises(expected[0]) as e:
            torch.ops.gems.dot(a, b)
        assert str(e.value) == aten_error(lambda: torch.dot(a, b))[1]
