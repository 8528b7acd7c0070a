"""GPU accuracy suite for mm and addmm (docs/TESTING.md), against torch on float64 inputs.

The aten overrides follow the tuning table, which sends the shape buckets where cuBLAS was faster
to ATen; these tests turn that routing off (torch.ops.gems._set_gemm_routing) so that every shape
runs gems' kernels, except test_routing, which checks it."""

import zlib

import pytest
import torch

import gems_aot
from aot import gemm_tuning
from conftest import cuda_kernel_names, requires_gpu
from gemm_gpu_cases import (  # noqa: F401 - clean_state is an autouse fixture
    aten_error,
    check,
    clean_state,
    FLOATS,
    gems_and_torch_mm,
    hopper,
    LAYOUTS,
    no_fallbacks,
    operands,
    poison_next_alloc,
    ran_table_kernel,
    rand,
    RTOL,
    SHAPES,
    sm90_table,
    smallest_case_per_config,
    TABLE_KERNELS,
)

pytestmark = [requires_gpu, pytest.mark.gpu]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_mm(dtype, shape, layout):
    torch.manual_seed(zlib.crc32(f"{dtype}{shape}{layout}".encode()))
    a, b = operands(shape, dtype, layout)
    check(gems_and_torch_mm(a, b), a, b)
    no_fallbacks()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_mm_bf16_4096(layout):
    torch.manual_seed(0)
    a, b = operands((4096, 4096, 4096), torch.bfloat16, layout)
    check(gems_and_torch_mm(a, b), a, b)
    no_fallbacks()


@pytest.mark.parametrize("setting", ["allow_tf32", "precision_high"])
@pytest.mark.parametrize("shape", [(33, 17, 45), (1024, 1024, 1024)], ids=lambda s: "x".join(map(str, s)))
def test_mm_fp32_tf32(shape, setting):
    torch.manual_seed(1)
    a, b = operands(shape, torch.float32, "nt")
    ieee = gems_and_torch_mm(a, b)
    check(ieee, a, b)
    if setting == "allow_tf32":
        torch.backends.cuda.matmul.allow_tf32 = True
    else:
        torch.set_float32_matmul_precision("high")
    tf32 = gems_and_torch_mm(a, b)
    check(tf32, a, b, tf32=True)
    if shape[2] >= 1024:
        assert not torch.equal(tf32, ieee)  # the flag reached the kernel
    no_fallbacks()


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_mm_sliced_and_expanded(dtype):
    torch.manual_seed(2)
    big_a, big_b = rand(70, 60, dtype), rand(50, 40, dtype)
    cases = {
        # storage offsets and leading strides that are not multiples of 16: the general variant
        "storage_offset": (big_a[1:34, 3:48], big_b[2:47, 1:18]),
        "storage_offset_t": (big_a[1:34, 3:48], big_a.t()[5:50, 7:24]),
        # aligned pointers, leading stride 64 != K: the aligned variant
        "padded": (rand(48, 64, dtype)[:, :32], rand(32, 80, dtype)[:, :48]),
        # stride 0 (an expanded operand) as leading stride
        "expanded": (rand(1, 64, dtype).expand(48, 64), rand(64, 1, dtype).expand(64, 32)),
        "one_row": (rand(1, 64, dtype), rand(32, 64, dtype).t()),
    }
    for name, (a, b) in cases.items():
        check(gems_and_torch_mm(a, b), a, b)
    no_fallbacks()


def test_mm_needs_64bit_offsets():
    """A has more than 2**31 elements (int32 offsets would wrap); both layouts of A."""
    M, N, K = 140_000, 64, 16_384
    if torch.cuda.get_device_properties(0).total_memory < 3 * M * K * 2:
        pytest.skip("needs ~14 GB of GPU memory")
    torch.manual_seed(3)
    b = rand(K, N, torch.bfloat16, transposed=True)
    for transposed in (False, True):
        a = rand(M, K, torch.bfloat16, transposed)
        res = torch.ops.gems.mm(a, b)
        tail = slice(M - 512, M)
        torch.testing.assert_close(res[tail], (a[tail].double() @ b.double()).to(torch.bfloat16), rtol=1.6e-2,
                                   atol=1e-4 * K)
        del a, res
        torch.cuda.empty_cache()


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_mm_out(dtype):
    torch.manual_seed(4)
    a, b = rand(33, 45, dtype), rand(45, 17, dtype)
    with gems_aot.use_gems(include=["mm"]):
        out = torch.empty(0, device="cuda", dtype=dtype)
        assert torch.mm(a, b, out=out) is out
        check(out, a, b)
        out = torch.full((2, 2), float("nan"), device="cuda", dtype=dtype)
        with pytest.warns(UserWarning, match="resized"):
            torch.mm(a, b, out=out)
        check(out, a, b)
        # Outputs of the right size keep their strides, as torch keeps them.
        col_major = torch.full((17, 33), float("nan"), device="cuda", dtype=dtype).t()
        torch.mm(a, b, out=col_major)
        assert col_major.stride() == (1, 33)
        check(col_major.contiguous(), a, b)
        padded = torch.full((33, 32), float("nan"), device="cuda", dtype=dtype)[:, :17]
        torch.mm(a, b, out=padded)
        assert padded.stride() == (32, 1)
        check(padded.contiguous(), a, b)
        zeros = torch.full((33, 17), float("nan"), device="cuda", dtype=dtype)
        torch.mm(a[:, :0], b[:0], out=zeros)
        assert torch.equal(zeros, torch.zeros_like(zeros))
    no_fallbacks()


def test_mm_out_uncovered_layouts_fall_back():
    torch.manual_seed(5)
    a, b = rand(32, 32, torch.float32), rand(32, 32, torch.float32)
    expected = torch.mm(a, b)
    with gems_aot.use_gems(include=["mm"]):
        strided = torch.full((64, 64), float("nan"), device="cuda")[::2, ::2]
        torch.mm(a, b, out=strided)
    torch.testing.assert_close(strided, expected)
    # An out= aliasing an input gets ATen's own semantics, error or not.
    alias = a.clone()
    aten = aten_error(lambda: torch.mm(alias, b, out=alias))
    alias = a.clone()
    with gems_aot.use_gems(include=["mm"]):
        assert aten_error(lambda: torch.mm(alias, b, out=alias)) == aten
    assert gems_aot.fallback_counts() == {("mm.out", "layout"): 2}


def test_mm_fallbacks_and_direct_errors():
    torch.manual_seed(6)
    cases = {
        "dtype": (rand(33, 45, torch.float64), rand(45, 17, torch.float64)),
        "layout": (rand(66, 90, torch.float32)[::2, ::2], rand(45, 17, torch.float32)),
    }
    for reason, (a, b) in cases.items():
        gems_aot.reset_fallback_counts()
        expected = torch.mm(a, b)
        with gems_aot.use_gems(include=["mm"]):
            res = torch.mm(a, b)
        assert torch.equal(res, expected), reason  # ATen's own kernel ran
        assert gems_aot.fallback_counts() == {("mm", reason): 1}
        with pytest.raises(RuntimeError, match=rf"gems::mm: no gems kernel covers this input \({reason}: "):
            torch.ops.gems.mm(a, b)


@pytest.mark.parametrize(
    "case",
    ["shapes", "dtypes", "rank_self", "rank_mat2", "int32", "cpu_operand", "out_dtype"],
)
def test_bad_input_gives_torchs_error(case):
    f32 = torch.float32
    a, b, out = rand(3, 4, f32), rand(4, 6, f32), None
    if case == "shapes":
        b = rand(5, 6, f32)
    elif case == "dtypes":
        b = rand(4, 6, torch.float16)
    elif case == "rank_self":
        a = a[..., None]
    elif case == "rank_mat2":
        b = b[0]
    elif case == "int32":
        a, b = a.to(torch.int32), b.to(torch.int32)
    elif case == "cpu_operand":
        b = b.cpu()
    elif case == "out_dtype":
        out = torch.empty(3, 6, device="cuda", dtype=torch.float16)
    call = (lambda: torch.mm(a, b)) if out is None else (lambda: torch.mm(a, b, out=out))
    expected = aten_error(call)
    with gems_aot.use_gems(include=["mm"]):
        got = aten_error(call)
    assert got == expected
    if case in ("shapes", "dtypes", "rank_self", "rank_mat2"):
        assert expected is not None
        with pytest.raises(expected[0]) as e:
            torch.ops.gems.mm(a, b)
        assert str(e.value) == expected[1]


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_autograd(dtype):
    torch.manual_seed(7)
    a = rand(33, 45, dtype).requires_grad_()
    b = rand(45, 64, dtype).requires_grad_()
    grad = rand(33, 64, dtype)
    torch.mm(a, b).backward(grad)
    expected = a.grad, b.grad
    a.grad = b.grad = None
    with gems_aot.use_gems(include=["mm"]):
        out = torch.mm(a, b)
        out.backward(grad)  # grad @ b.t() and a.t() @ grad: the transposed layouts
    check(out.detach(), a.detach(), b.detach())
    rtol, atol = RTOL[dtype], 1e-4 * 64
    torch.testing.assert_close(a.grad, expected[0], rtol=max(rtol, 1e-5), atol=atol)
    torch.testing.assert_close(b.grad, expected[1], rtol=max(rtol, 1e-5), atol=atol)
    no_fallbacks()


# ---- the Hopper TMA kernel: device-side descriptors in global scratch, PDL launches ----------

@hopper
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_tma_variant_runs_for_aligned_16bit(dtype, layout):
    a, b = operands((1024, 512, 256), dtype, layout)
    names = cuda_kernel_names(lambda: torch.ops.gems.mm(a, b))
    assert ran_table_kernel(names), names
    check(torch.ops.gems.mm(a, b), a, b)


@hopper
@pytest.mark.parametrize("shape", [(1, 16, 16), (16, 16, 1024), (777, 1040, 48), (4096, 16, 64), (17, 4104, 1),
                                   (4097, 24, 17), (3000, 512, 2048), (512, 2048, 3000), (3001, 520, 1000)],
                         ids=lambda s: "x".join(map(str, s)))
def test_tma_ragged_edges_and_uneven_sizes(shape):
    """TMA clips the edge tiles, so any M, N and K runs the TMA kernel (token counts of 3000,
    3001, 4097: no multiple of a tile), as long as the leading strides are 16-byte multiples; a
    1-row operand gets a synthetic leading stride."""
    for layout in LAYOUTS:
        a, b = operands(shape, torch.bfloat16, layout)
        if all(d % 8 == 0 for d in shape):  # every leading stride a multiple of 16 bytes
            names = cuda_kernel_names(lambda: torch.ops.gems.mm(a, b))
            assert ran_table_kernel(names), (layout, names)
        check(torch.ops.gems.mm(a, b), a, b)


@hopper
def test_leading_stride_off_16_bytes_takes_pointer_kernel():
    """K = 4095 bf16: 8190-byte rows, which TMA cannot describe; the general pointer variant
    serves them, still right."""
    a, b = operands((96, 80, 4095), torch.bfloat16, "nt")
    names = cuda_kernel_names(lambda: torch.ops.gems.mm(a, b))
    assert not ran_table_kernel(names) and any("mm_kernel" in n for n in names), names
    check(torch.ops.gems.mm(a, b), a, b)


@hopper
@pytest.mark.parametrize("klass", ["16bit", "tf32"])
def test_every_table_configuration_is_exact(klass):
    """Each reachable configuration the build compiled from the table (split-K ones included), on
    a shape its bucket picks: values, and the configuration's kernel ran."""
    table = sm90_table()
    dtype = torch.bfloat16 if klass == "16bit" else torch.float32
    torch.backends.cuda.matmul.allow_tf32 = klass == "tf32"
    cases = smallest_case_per_config(table, klass)
    assert cases
    for config, (m, n, k, layout) in cases.items():
        torch.manual_seed(config)
        a, b = operands((m, n, k), dtype, layout)
        names = cuda_kernel_names(lambda: torch.ops.gems.mm(a, b))
        cfg = gemm_tuning.TmaConfig.from_list(table["classes"][klass]["configs"][config])
        assert any(TABLE_KERNELS[cfg.kernel] in n for n in names), (cfg.name, names)
        check(gems_and_torch_mm(a, b), a, b, tf32=klass == "tf32")
    no_fallbacks()


def split_k_case(table):
    configs = table["classes"]["16bit"]["configs"]
    split = [i for i, c in enumerate(configs) if gemm_tuning.TmaConfig.from_list(c).split_k > 1]
    cases = smallest_case_per_config(table, "16bit")
    if not split:
        pytest.skip("the table uses no split-K configuration")
    return cases[split[0]]


@hopper
def test_split_k_in_a_cuda_graph():
    """Split-K's workspace and the memset of its counters are captured with the kernel; a replay
    on new data sums the new partials (stale counters would skip or double a tile)."""
    check_graph_replays(split_k_case(sm90_table()))


def check_graph_replays(case):
    """mm of a (m, n, k, layout) case captured in a CUDA graph, replayed on new data."""
    m, n, k, layout = case
    a, b = operands((m, n, k), torch.bfloat16, layout)
    torch.ops.gems.mm(a, b)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        c = torch.ops.gems.mm(a, b)
    for seed in range(3):
        torch.manual_seed(seed)
        a.copy_(torch.randn_like(a))
        graph.replay()
        torch.cuda.synchronize()
        check(c, a, b)


def skinny_cases(table):
    """(m, n, k, layout) of each reachable skinny configuration of the 16-bit class."""
    configs = table["classes"]["16bit"]["configs"]
    cases = smallest_case_per_config(table, "16bit")
    found = [case for config, case in cases.items()
             if gemm_tuning.TmaConfig.from_list(configs[config]).kernel == "skinny"]
    if not found:
        pytest.skip("the table uses no skinny configuration")
    return found


@hopper
def test_skinny_bias_epilogue_uneven_sizes_and_cuda_graph():
    """The few-rows kernel where the table picks it: addmm's bias epilogue (beta, alpha; beta 0
    ignores a NaN bias), ragged M and N around its tiles, and its K-split counters' memset captured
    in a CUDA graph (a replay on new data sums the new partials)."""
    for m, n, k, layout in skinny_cases(sm90_table()):
        a, b = operands((m, n, k), torch.bfloat16, layout)
        bias = torch.randn(n, device="cuda", dtype=torch.bfloat16)
        names = cuda_kernel_names(lambda: torch.ops.gems.addmm(bias, a, b, beta=0.5, alpha=2.0))
        assert any("mm_skinny_kernel" in x for x in names), ((m, n, k, layout), names)
        check_addmm(torch.ops.gems.addmm(bias, a, b, beta=0.5, alpha=2.0), bias, a, b, 0.5, 2.0)
        nan_bias = torch.full_like(bias, float("nan"))
        check_addmm(torch.ops.gems.addmm(nan_bias, a, b, beta=0, alpha=1.0), torch.zeros_like(bias), a, b, 0, 1.0)
        for dm, dn in ((m + 3, n - 8), (max(m - 1, 1), n + 8)):
            a2, b2 = operands((dm, dn, k), torch.bfloat16, layout)
            check(torch.ops.gems.mm(a2, b2), a2, b2)
    check_graph_replays(skinny_cases(sm90_table())[0])


@hopper
def test_routing_sends_slower_buckets_to_aten():
    """With routing on (the default), a bucket the table marks for ATen runs cuBLAS through the
    override (bitwise ATen's result, counted as tuned_to_aten), while torch.ops.gems.mm still runs
    gems' kernel; a bucket gems serves runs gems' kernel with no fallback."""
    table = sm90_table()
    rows = [r for r in table["rows"] if r["class"] == "16bit"]
    routed = next((r for r in rows if r["aten"]), None)
    served = next((r for r in rows if not r["aten"]), None)
    torch.ops.gems._set_gemm_routing(True)
    if routed:
        a, b = operands((routed["m"], routed["n"], routed["k"]), torch.bfloat16, routed["layout"])
        expected = torch.mm(a, b)
        with gems_aot.use_gems(include=["mm"]):
            assert torch.equal(torch.mm(a, b), expected)
        assert gems_aot.fallback_counts() == {("mm", "tuned_to_aten"): 1}
        assert ran_table_kernel(cuda_kernel_names(lambda: torch.ops.gems.mm(a, b)))
        gems_aot.reset_fallback_counts()
    if served:
        a, b = operands((served["m"], served["n"], served["k"]), torch.bfloat16, served["layout"])
        with gems_aot.use_gems(include=["mm"]):
            names = cuda_kernel_names(lambda: torch.mm(a, b))
        assert ran_table_kernel(names), names
        no_fallbacks()

@hopper
def test_tma_expanded_operand_takes_pointer_kernel():
    """A leading stride of 0 is no TMA stride: the general variant serves it, still right."""
    a = torch.randn(1, 64, device="cuda", dtype=torch.bfloat16).expand(128, 64)
    b = torch.randn(64, 32, device="cuda", dtype=torch.bfloat16)
    names = cuda_kernel_names(lambda: torch.ops.gems.mm(a, b))
    assert not ran_table_kernel(names) and any("mm_kernel" in n for n in names), names
    check(torch.ops.gems.mm(a, b), a, b)


@hopper
def test_pdl_chain_reads_what_the_previous_kernel_wrote():
    """Each mm starts (PDL) while the kernel before it may still run: its gdc_wait must make the
    previous writes visible. Producer and consumer alternate with no host sync between them,
    and freed blocks are reused at once (scratch, outputs) by the caching allocator."""
    b = torch.randn(512, 512, device="cuda", dtype=torch.bfloat16) / 64
    xs, ys = [torch.randn(256, 512, device="cuda", dtype=torch.bfloat16)], []
    with gems_aot.use_gems(include=["mm", "add.Tensor"]):
        for _ in range(32):
            ys.append(torch.mm(xs[-1], b))  # PDL launch right after the add that wrote xs[-1]
            xs.append(torch.add(ys[-1], xs[-1]))
    for x, y in zip(xs, ys):  # a stale read would be far off the product of what was written
        check(y, x, b)
    no_fallbacks()


@hopper
def test_pdl_launches_in_a_cuda_graph():
    """Graph capture records the PDL launches (programmatic edges) and the scratch block."""
    a = torch.randn(512, 256, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(256, 384, device="cuda", dtype=torch.bfloat16)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        torch.ops.gems.mm(a, b)  # warm up outside the capture (the module load)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        c = torch.ops.gems.mm(a, b)
        d = torch.ops.gems.mm(c, b.t())
    a.copy_(torch.randn_like(a))
    graph.replay()
    torch.cuda.synchronize()
    check(c, a, b)
    torch.testing.assert_close(d, torch.ops.gems.mm(c, b.t()), rtol=0, atol=0)


@hopper
def test_global_scratch_is_returned_to_the_allocator():
    a = torch.randn(2048, 1024, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(1024, 2048, device="cuda", dtype=torch.bfloat16)
    torch.ops.gems.mm(a, b)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    for _ in range(10):
        torch.ops.gems.mm(a, b)
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before


# ---- addmm: the bias-row epilogue (nn.Linear with a bias), and what ATen keeps -----------------


def check_addmm(res, bias, a, b, beta, alpha):
    K = a.shape[1]
    with gems_aot.use_gems(include=[]):
        product = a.double() @ b.double()
        ref = alpha * product if beta == 0 else alpha * product + beta * bias.double()
        ref = ref.to(res.dtype)
    assert res.dtype == a.dtype and res.shape == ref.shape and res.is_contiguous()
    torch.testing.assert_close(res, ref, rtol=RTOL[res.dtype], atol=1e-4 * K * 4, equal_nan=True)


def bias_forms(n, dtype):
    full = torch.randn(2 * n, device="cuda").to(dtype)
    return {"vector": full[:n], "row": full[:n][None, :], "strided": full[::2], "scalar": full[:1]}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_addmm_bias_row(dtype, layout):
    torch.manual_seed(zlib.crc32(f"addmm{dtype}{layout}".encode()))
    # Sizes whose leading strides are 16-byte multiples in every layout: what TMA, and so the
    # epilogue, serves (test_addmm_what_aten_keeps has the others).
    for shape in [(40, 48, 56), (3000, 520, 256), (1, 2048, 512)]:
        a, b = operands(shape, dtype, layout)
        for form, bias in bias_forms(shape[1], dtype).items():
            for beta, alpha in ((1, 1), (-2.0, 0.5), (0, 3.0)):
                poison_next_alloc(shape[:2], dtype)
                with gems_aot.use_gems(include=["addmm"]):
                    res = torch.addmm(bias, a, b, beta=beta, alpha=alpha)
                check_addmm(res, bias, a, b, beta, alpha)
                assert torch.equal(res, torch.ops.gems.addmm(bias, a, b, beta=beta, alpha=alpha)), form
    no_fallbacks()


def test_addmm_beta_zero_ignores_nan_bias():
    a, b = operands((64, 64, 64), torch.bfloat16, "nt")
    bias = torch.full((64,), float("nan"), device="cuda", dtype=torch.bfloat16)
    with gems_aot.use_gems(include=["addmm"]):
        res = torch.addmm(bias, a, b, beta=0, alpha=2)
    assert not res.isnan().any()
    check_addmm(res, bias, a, b, 0, 2)


def test_linear_with_bias_is_one_gems_kernel():
    """nn.Linear's forward (addmm with the bias row) launches the TMA kernel and no add kernel;
    forward and backward equal ATen's within tolerance."""
    torch.manual_seed(8)
    layer = torch.nn.Linear(512, 1024, device="cuda", dtype=torch.bfloat16)
    x = torch.randn(3000, 512, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    grad = torch.randn(3000, 1024, device="cuda", dtype=torch.bfloat16)
    ref = layer(x)
    ref.backward(grad)
    ref_grads = [t.grad.clone() for t in (x, layer.weight, layer.bias)]
    for t in (x, layer.weight, layer.bias):
        t.grad = None
    with gems_aot.use_gems(include=["addmm", "mm"]):
        if torch.cuda.get_device_capability() == (9, 0):
            names = cuda_kernel_names(lambda: layer(x))
            # (a split-K configuration adds the driver's memset of its counters)
            assert ran_table_kernel(names), names
            assert all(ran_table_kernel([n]) or "memset" in n.lower() for n in names), names
        out = layer(x)
        out.backward(grad)
    check_addmm(out.detach(), layer.bias.detach(), x.detach(), layer.weight.detach().t(), 1, 1)
    for got, want in zip((x.grad, layer.weight.grad, layer.bias.grad), ref_grads):
        torch.testing.assert_close(got, want, rtol=RTOL[torch.bfloat16], atol=1e-4 * 3000 * 4)
    assert ("addmm", "args") not in gems_aot.fallback_counts()


def test_addmm_what_aten_keeps():
    """A full bias matrix, operands TMA cannot describe, exact fp32, K = 0 and mixed dtypes go to
    ATen, counted; the results (or errors) are ATen's."""
    torch.manual_seed(9)
    a16, b16 = operands((33, 17, 45), torch.bfloat16, "nn")
    cases = {
        "args": [(torch.randn(33, 17, device="cuda", dtype=torch.bfloat16), a16, b16),
                 (torch.randn(17, device="cuda", dtype=torch.bfloat16), a16, b16),  # K = 45: no TMA
                 (torch.randn(17, device="cuda"), a16.float(), b16.float()),
                 (torch.randn(17, device="cuda", dtype=torch.bfloat16), a16[:, :0], b16[:0])],
        "mixed_dtype": [(torch.randn(17, device="cuda"), a16, b16)],
    }
    for reason, calls in cases.items():
        for args in calls:
            gems_aot.reset_fallback_counts()
            expected = aten_error(lambda: torch.addmm(*args, beta=0.5))
            with gems_aot.use_gems(include=["addmm"]):
                got = aten_error(lambda: torch.addmm(*args, beta=0.5))
            assert got == expected
            if expected is None:
                with gems_aot.use_gems(include=["addmm"]):
                    res = torch.addmm(*args, beta=0.5)
                assert torch.equal(res, torch.addmm(*args, beta=0.5))
            assert set(gems_aot.fallback_counts()) == {("addmm", reason)}, (reason, args[0].shape)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_addmm_out(dtype):
    torch.manual_seed(10)
    a, b = rand(33, 48, dtype), rand(48, 40, dtype)
    bias = torch.randn(40, device="cuda").to(dtype)
    with gems_aot.use_gems(include=["addmm"]):
        out = torch.empty(0, device="cuda", dtype=dtype)
        assert torch.addmm(bias, a, b, out=out) is out
        check_addmm(out, bias, a, b, 1, 1)
        out = torch.full((2, 2), float("nan"), device="cuda", dtype=dtype)
        with pytest.warns(UserWarning, match="resized"):
            torch.addmm(bias, a, b, out=out)
        check_addmm(out, bias, a, b, 1, 1)
    no_fallbacks()
    # A col-major out (the transposed problem would need a bias column) and an out aliasing an
    # input are ATen's, error or not.
    with gems_aot.use_gems(include=["addmm"]):
        col = torch.full((40, 33), float("nan"), device="cuda", dtype=dtype).t()
        torch.addmm(bias, a, b, out=col)
        check_addmm(col.contiguous(), bias, a, b, 1, 1)
    square = rand(40, 40, dtype)
    alias = square.clone()
    aten = aten_error(lambda: torch.addmm(bias, alias, b[:40], out=alias))
    alias = square.clone()
    with gems_aot.use_gems(include=["addmm"]):
        assert aten_error(lambda: torch.addmm(bias, alias, b[:40], out=alias)) == aten
    assert gems_aot.fallback_counts() == {("addmm.out", "args"): 1, ("addmm.out", "layout"): 1}


@pytest.mark.parametrize("case", ["shapes", "dtypes", "rank", "bias_shape", "cpu_bias"])
def test_addmm_bad_input_gives_torchs_error(case):
    bf = torch.bfloat16
    bias, a, b = torch.randn(6, device="cuda", dtype=bf), rand(3, 4, bf), rand(4, 6, bf)
    if case == "shapes":
        b = rand(5, 6, bf)
    elif case == "dtypes":
        b = rand(4, 6, torch.float16)
    elif case == "rank":
        a = a[..., None]
    elif case == "bias_shape":
        bias = torch.randn(5, device="cuda", dtype=bf)
    elif case == "cpu_bias":
        bias = bias.cpu()
    expected = aten_error(lambda: torch.addmm(bias, a, b))
    with gems_aot.use_gems(include=["addmm"]):
        got = aten_error(lambda: torch.addmm(bias, a, b))
    assert expected is not None and got == expected
