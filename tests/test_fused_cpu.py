"""CPU tests of the fused activation family: kernel math under the interpreter, declarations,
AOT compile, and (with the built extension) schemas, Meta functions, errors and autograd.

`run_forward` / `run_backward` mirror the driver in csrc/ops/fused.cpp (row view or contiguous
copy, tile, aligned or general variant, launch grid), so the interpreted kernels run exactly the
launches the C++ makes. libdevice calls are evaluated by torch (conftest.libdevice_by_torch).
"""

import functools
import inspect

import pytest
import torch
import torch.nn.functional as F
from conftest import _InterpretedLibdevice, interpreted, libdevice_by_torch

from aot import family_fused as fam
from aot import schemas
from aot.variants import DTYPES

GRID = fam.GRIDS[0]
ARCHS = (80, 90, 100)
RTOL = {torch.float32: 1.3e-6, torch.float16: 1e-3, torch.bfloat16: 1.6e-2}
NAME = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
ELEMENT_BYTES = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2}
FLOATS = (torch.float32, torch.float16, torch.bfloat16)
ACTS = fam.ACTS
MAX_GRID_Y = 65535


@functools.lru_cache(maxsize=None)
def kernels():
    mod = interpreted("kernels.fused")
    mod.libdevice = _InterpretedLibdevice()
    return mod


# -- the driver, mirrored ------------------------------------------------------------------------


def row_stride(t):
    """csrc/ops/fused.cpp row_stride: the stride between rows of t.size(-1) contiguous elements,
    0 for a single row, -1 where t has no such view."""
    if t.shape[-1] > 1 and t.stride(-1) != 1:
        return -1
    stride, span = 0, None
    for d in range(t.dim() - 2, -1, -1):
        if t.shape[d] == 1:
            continue
        if span is None:
            stride = t.stride(d)
        elif t.stride(d) != span:
            return -1
        span = t.stride(d) * t.shape[d]
    return stride


def as_rows(t):
    return t if row_stride(t) >= 0 else t.contiguous()


def tile_for(h):
    return fam.tile_for(h)


def choose(dtype, H, pointers, strides):
    """(tile, vec) of the variant the driver picks."""
    vec = 16 // ELEMENT_BYTES[dtype]
    aligned = H % vec == 0 and all(p % 16 == 0 for p in pointers) and all(s % vec == 0 for s in strides)
    return tile_for(H), vec if aligned else 1


def grid_for(tile, M, H):
    block_m, block_n, _ = fam.TILES[tile]
    grid = (-(-M // block_m), -(-H // block_n))
    assert grid[0] <= 2**31 - 1 and grid[1] <= MAX_GRID_Y
    return grid


def run_forward(x, act, log=None):
    """out = act(a) * b through the mirrored driver and the interpreted kernel."""
    H = x.shape[-1] // 2
    out = torch.full((*x.shape[:-1], H), float("nan"), dtype=x.dtype)  # poisoned
    if out.numel() == 0:
        return out
    xr = as_rows(x)
    M, x_row = out.numel() // H, row_stride(xr)
    tile, vec = choose(x.dtype, H, (xr.data_ptr(), out.data_ptr()), (x_row,))
    block_m, block_n, _ = fam.TILES[tile]
    grid = grid_for(tile, M, H)
    if log is not None:
        log.append((tile, vec, grid))
    with libdevice_by_torch():
        kernels().act_and_mul_fwd[grid](xr, out, M, H // vec, x_row // vec, ACT=act, VEC=vec, BLOCK_M=block_m,
                                        BLOCK_N=block_n)
    return out


def run_backward(grad, x, act, log=None):
    """grad_x through the mirrored driver and the interpreted kernel."""
    dx = torch.full(x.shape, float("nan"), dtype=x.dtype)  # poisoned
    if dx.numel() == 0:
        return dx
    xr, gr = as_rows(x), as_rows(grad)
    H = x.shape[-1] // 2
    M = dx.numel() // (2 * H)
    x_row, g_row = row_stride(xr), row_stride(gr)
    tile, vec = choose(x.dtype, H, (gr.data_ptr(), xr.data_ptr(), dx.data_ptr()), (g_row, x_row))
    block_m, block_n, _ = fam.TILES[tile]
    grid = grid_for(tile, M, H)
    if log is not None:
        log.append((tile, vec, grid))
    with libdevice_by_torch():
        kernels().act_and_mul_bwd[grid](gr, xr, dx, M, H // vec, g_row // vec, x_row // vec, ACT=act, VEC=vec,
                                        BLOCK_M=block_m, BLOCK_N=block_n)
    return dx


# -- references ----------------------------------------------------------------------------------


def torch_act(a, act):
    if act == "silu":
        return F.silu(a)
    return F.gelu(a, approximate="tanh" if act == "gelu_tanh" else "none")


def reference(x, act):
    """The unfused torch sequence on float64."""
    H = x.shape[-1] // 2
    xd = x.double()
    return torch_act(xd[..., :H], act) * xd[..., H:]


def reference_grad(grad, x, act):
    xd = x.double().requires_grad_()
    H = x.shape[-1] // 2
    y = torch_act(xd[..., :H], act) * xd[..., H:]
    (gx,) = torch.autograd.grad(y, xd, grad.double())
    return gx


def check(res, ref, equal_nan=False):
    assert res.shape == ref.shape and res.is_contiguous()
    torch.testing.assert_close(res, ref.to(res.dtype), rtol=RTOL[res.dtype], atol=1e-4, equal_nan=equal_nan)


def make(shape, dtype, gen, scale=3.0):
    return (torch.randn(shape, generator=gen) * scale).to(dtype)


# -- kernel math, interpreted --------------------------------------------------------------------

# H values: every tile, ragged (not a multiple of the block or of VEC), several column blocks.
H_CASES = [1, 11, 37, 64, 100, 256, 300, 1030, 2048 + 8]


@pytest.mark.parametrize("H", H_CASES)
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("act", ACTS)
def test_forward(act, dtype, H, seeded):
    M = 19 if H <= 256 else 3  # ragged row blocks for the multi-row tiles
    x = make((M, 2 * H), dtype, seeded)
    log = []
    res = run_forward(x, act, log)
    assert log[0][0] == tile_for(H)
    check(res, reference(x, act))


@pytest.mark.parametrize("H", H_CASES)
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("act", ACTS)
def test_backward(act, dtype, H, seeded):
    M = 19 if H <= 256 else 3
    x = make((M, 2 * H), dtype, seeded)
    grad = make((M, H), dtype, seeded, scale=1.0)
    res = run_backward(grad, x, act)
    check(res, reference_grad(grad, x, act))


@pytest.mark.parametrize("act", ACTS)
def test_aligned_and_general_variants(act, seeded):
    # H a multiple of VEC with aligned rows: VEC 8 (bf16), 4 (fp32); an offset slice: general.
    for dtype, H, expect_vec in ((torch.bfloat16, 64, 8), (torch.float32, 100, 4), (torch.float16, 36, 1)):
        x = make((9, 2 * H), dtype, seeded)
        log = []
        check(run_forward(x, act, log), reference(x, act))
        assert log[0][1] == expect_vec
        grad = make((9, H), dtype, seeded, scale=1.0)
        log = []
        check(run_backward(grad, x, act, log), reference_grad(grad, x, act))
        assert log[0][1] == expect_vec
    base = make((9 * 128 + 1,), torch.bfloat16, seeded)
    x = base[1:].view(9, 128)  # 2-byte offset: not 16-byte aligned
    log = []
    check(run_forward(x, act, log), reference(x, act))
    assert log[0][1] == 1


def test_layouts(seeded):
    H = 40
    base = make((6, 5, 3 * H), torch.float32, seeded)
    cases = [
        (base[..., : 2 * H], 3 * H),  # padded rows: rows 3H apart, viewed without a copy
        (base[1:4, :, H:], 3 * H),  # storage offset and two collapsible leading dims
        (base[:, 2:4, H:], -1),  # leading dims that do not collapse: copy
        (base[:, :1, : 2 * H], 15 * H),  # a size-1 dim between
        (base[:1, :1, : 2 * H], 0),  # a single row
        (make((2 * H,), torch.float32, seeded), 0),  # 1-D
        (make((2 * H,), torch.float32, seeded).expand(4, 2 * H), 0),  # rows of stride 0
        (make((4, 2 * H), torch.float32, seeded).expand(3, 4, 2 * H), -1),  # stride 0 over several rows: copy
        (make((2 * H, 7), torch.float32, seeded).t(), -1),  # strided last dim: copy
        (make((5, 6, 2 * H), torch.float32, seeded).transpose(0, 1), -1),  # leading dims out of order: copy
        (make((7, 4 * H), torch.float32, seeded)[:, ::2], -1),  # step slice: copy
    ]
    for x, stride in cases:
        assert row_stride(x) == stride, (x.shape, x.stride())
        for act in ACTS:
            check(run_forward(x, act), reference(x, act))
            grad = make((*x.shape[:-1], H), torch.float32, seeded, scale=1.0)
            check(run_backward(grad, x, act), reference_grad(grad, x, act))
    # A non-contiguous grad (a transposed one: copied; an expanded one: rows of stride 0).
    x = make((6, 2 * H), torch.float32, seeded)
    for grad in (make((H, 6), torch.float32, seeded).t(), make((H,), torch.float32, seeded).expand(6, H)):
        check(run_backward(grad, x, "silu"), reference_grad(grad, x, "silu"))


def test_three_dims(seeded):
    x = make((3, 7, 2 * 70), torch.bfloat16, seeded)
    for act in ACTS:
        res = run_forward(x, act)
        assert res.shape == (3, 7, 70)
        check(res, reference(x, act))


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_special_values(act, dtype, seeded):
    H = 16
    x = make((3, 2 * H), dtype, seeded)
    specials = torch.tensor([float("nan"), float("inf"), float("-inf"), -0.0, 30.0, -30.0], dtype=dtype)
    x[:, :6] = specials  # a: b is finite
    x[:, H + 8 : H + 14] = specials  # b, where a is moderate
    x[:, 8:14] = 0.5
    check(run_forward(x, act), reference(x, act), equal_nan=True)


def test_empty():
    for shape in ((0, 8), (4, 0), (2, 0, 6)):
        x = torch.empty(shape)
        assert run_forward(x, "silu").shape == (*shape[:-1], shape[-1] // 2)
        assert run_backward(torch.empty(*shape[:-1], shape[-1] // 2), x, "gelu").shape == shape


def test_tile_choice_matches_driver():
    # The C++ choice is generated from the same declaration.
    header = fam.generated_sources()[fam.TILE_HEADER]
    assert ("  if (h <= 64) return gen::act_and_mul::tile_h64;\n  if (h <= 256) return gen::act_and_mul::tile_h256;\n"
            "  return gen::act_and_mul::tile_h1k;\n}") in header
    assert [tile_for(h) for h in (1, 64, 65, 256, 257, 11008)] == ["h64", "h64", "h256", "h256", "h1k", "h1k"]
    # Grid limits: H up to 65535 column blocks of the widest tile.
    assert grid_for("h1k", 4096, 11008) == (4096, 11)
    assert grid_for("h64", 2**31 - 100, 64) == (-(-(2**31 - 100) // 16), 1)


# -- declarations ----------------------------------------------------------------------------------


def _points():
    return [(p, a) for p in GRID.points() for a in ARCHS]


def test_variant_count():
    per_arch = {a: sum(GRID.make(p, a) is not None for p in GRID.points()) for a in ARCHS}
    assert per_arch == {80: 108, 90: 108, 100: 108}


def test_declarations_match_kernels():
    for point, arch in _points():
        v = GRID.make(point, arch)  # its signature against the kernel: test_aot.py, for every family
        assert v.kernel == f"kernels.fused:act_and_mul_{point['pass']}"
        sig = dict(v.signature)
        pointers = [n for n, t in v.signature if t.startswith("*")]
        assert all(sig[n] == DTYPES[point["dtype"]][0] for n in pointers)
        assert pointers == (["x_ptr", "out_ptr"] if point["pass"] == "fwd" else ["grad_ptr", "x_ptr", "dx_ptr"])
        assert sig["M"] == "i64" and sig["H_v"] == "i32" and sig["x_row_v"] == "i64"
        block_m, block_n, warps = fam.TILES[point["tile"]]
        vec = 16 // fam.ELEMENT_BYTES[point["dtype"]] if point["align"] == "16" else 1
        assert dict(v.constexprs) == {"ACT": point["act"], "VEC": vec, "BLOCK_M": block_m, "BLOCK_N": block_n}
        assert v.num_warps == warps and v.launch_params == ("VEC", "BLOCK_M", "BLOCK_N")
        assert set(v.divisible16) == (set(pointers) if vec > 1 else set())
        # BLOCK_N * 65535 column blocks keep 2H + BLOCK_N within int32 (the driver's grid limit).
        assert 2 * block_n * MAX_GRID_Y + block_n < 2**31


def test_schemas():
    assert [o.name for o in fam.GEMS_OPS] == [
        "silu_and_mul", "gelu_and_mul", "silu_and_mul_backward", "gelu_and_mul_backward",
        "rotary_embedding", "rotary_embedding_backward",
    ]  # fmt: skip
    assert [o.cpp for o in fam.GEMS_OPS] == [o.name for o in fam.GEMS_OPS]
    assert fam.ATEN_OVERRIDES == []
    header = schemas.family_header(fam.__name__, fam.GEMS_OPS, fam.ATEN_OVERRIDES)
    for op in fam.GEMS_OPS:
        assert header.count(f" {op.cpp}(") == 2  # gems::cuda:: and gems::meta::
    assert "at::Tensor gelu_and_mul(const at::Tensor& x, c10::string_view approximate);" in header


# -- AOT compile -----------------------------------------------------------------------------------

SAMPLES = [
    {"pass": "fwd", "act": "silu", "dtype": "bf16", "tile": "h1k", "align": "16"},
    {"pass": "bwd", "act": "gelu", "dtype": "fp32", "tile": "h64", "align": "any"},
    {"pass": "fwd", "act": "gelu_tanh", "dtype": "fp16", "tile": "h256", "align": "16"},
    {"pass": "bwd", "act": "gelu_tanh", "dtype": "bf16", "tile": "h1k", "align": "16"},
]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("point", SAMPLES, ids=lambda p: GRID.symbol(p))
def test_aot_compile(point, arch):
    from aot.compiler import compile_variant

    v = GRID.make(point, arch)
    cubin, meta = compile_variant(v, arch)
    assert cubin[:4] == b"\x7fELF"
    assert meta["name"] == v.kernel.split(":")[1]
    assert meta["num_warps"] == v.num_warps and meta["num_ctas"] == 1
    assert meta["global_scratch_size"] == 0 and not meta["launch_cooperative_grid"] and not meta["launch_pdl"]
    assert meta["shared"] <= 48 * 1024


@pytest.mark.parametrize("align,vector", [("16", True), ("any", False)])
def test_aligned_variant_vectorizes(align, vector):
    # The VEC trick (H and row strides in units of 16 bytes) gives 16-byte loads and stores.
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    v = GRID.make({"pass": "bwd", "act": "silu", "dtype": "bf16", "tile": "h1k", "align": align}, 90)
    names = [n for n, _ in v.signature]
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in v.divisible16}
    src = ASTSource(v.jit_function(), signature=dict(v.signature), constexprs=dict(v.constexprs), attrs=attrs)
    ptx = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": v.num_warps}).asm["ptx"]
    assert ("ld.global.v4.b32" in ptx and "st.global.v4.b32" in ptx) == vector


# -- the built extension: schemas, Meta functions, errors, autograd -------------------------------------


@pytest.fixture(scope="module")
def gems():
    return pytest.importorskip("gems_aot", reason="the extension is not built")


OPS = ("silu_and_mul", "gelu_and_mul", "silu_and_mul_backward", "gelu_and_mul_backward")


def test_registered_schemas(gems):
    for decl in fam.GEMS_OPS:
        assert str(getattr(torch.ops.gems, decl.name).default._schema) == "gems::" + decl.schema


@pytest.mark.parametrize("name", OPS)
def test_dispatch_keys(gems, name):
    for key in ("CUDA", "Meta", "Autograd"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"gems::{name}", key), key
    assert not torch._C._dispatch_has_kernel_for_dispatch_key(f"gems::{name}", "CPU")


META_INPUTS = [
    lambda d: torch.empty(4, 16, device="meta", dtype=d),
    lambda d: torch.empty(2, 3, 22, device="meta", dtype=d),
    lambda d: torch.empty(2, device="meta", dtype=d),
    lambda d: torch.empty(0, 8, device="meta", dtype=d),
    lambda d: torch.empty(5, 0, device="meta", dtype=d),
    lambda d: torch.empty(30, 4, device="meta", dtype=d).t(),
    lambda d: torch.empty(3, 4, 5, 6, device="meta", dtype=d).to(memory_format=torch.channels_last),
]


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_meta_functions(gems, dtype):
    for make_x in META_INPUTS:
        x = make_x(dtype)
        H = x.shape[-1] // 2
        expected = torch.empty(*x.shape[:-1], H, device="meta", dtype=dtype)
        for out in (gems.silu_and_mul(x), gems.gelu_and_mul(x), gems.gelu_and_mul(x, approximate="tanh")):
            assert out.device.type == "meta"
            assert (out.shape, out.dtype, out.stride()) == (expected.shape, dtype, expected.stride())
        grad = torch.empty(expected.shape, device="meta", dtype=dtype)
        dense = torch.empty(x.shape, device="meta").stride()
        for dx in (torch.ops.gems.silu_and_mul_backward(grad, x), torch.ops.gems.gelu_and_mul_backward(grad, x, "tanh")):
            assert (dx.shape, dx.dtype, dx.stride()) == (x.shape, dtype, dense)


def test_errors(gems):
    m = "meta"
    cases = [
        (lambda: gems.silu_and_mul(torch.empty((), device=m)), "gems::silu_and_mul: expected x with at least one"),
        (lambda: gems.silu_and_mul(torch.empty(3, 7, device=m)),
         r"silu_and_mul: the last dimension must be even, got 7"),
        (lambda: gems.gelu_and_mul(torch.empty(5, device=m)), r"gems::gelu_and_mul: the last dimension must be even"),
        (lambda: gems.silu_and_mul(torch.empty(3, 8, device=m, dtype=torch.float64)),
         r"gems::silu_and_mul: unsupported dtype Double"),
        (lambda: gems.gelu_and_mul(torch.empty(3, 8, device=m, dtype=torch.int32)),
         r"gems::gelu_and_mul: unsupported dtype Int"),
        (lambda: gems.gelu_and_mul(torch.empty(3, 8, device=m), approximate="exact"),
         r"gems::gelu_and_mul: approximate argument must be either none or tanh, got 'exact'"),
        (lambda: torch.ops.gems.silu_and_mul_backward(torch.empty(3, 8, device=m), torch.empty(3, 8, device=m)),
         r"gems::silu_and_mul_backward: expected grad of shape \[3, 4\]"),
        (lambda: torch.ops.gems.gelu_and_mul_backward(torch.empty(3, 4, device=m, dtype=torch.half),
                                                      torch.empty(3, 8, device=m)),
         r"gems::gelu_and_mul_backward: expected grad of x's dtype Float, got Half"),
        (lambda: torch.ops.gems.gelu_and_mul_backward(torch.empty(3, 4, device=m), torch.empty(3, 8, device=m), "x"),
         r"gems::gelu_and_mul_backward: approximate argument"),
        (lambda: torch.ops.gems.silu_and_mul_backward(torch.empty(3, 4, device=m), torch.empty(3, 7, device=m)),
         r"last dimension must be even, got 7"),
    ]
    for fn, match in cases:
        with pytest.raises(RuntimeError, match=match):
            fn()


def test_cpu_tensors_rejected(gems):
    # No CPU kernel: the dispatcher's error names the op (also through the autograd kernel).
    for requires_grad in (False, True):
        with pytest.raises(NotImplementedError, match="gems::silu_and_mul"):
            gems.silu_and_mul(torch.ones(3, 8, requires_grad=requires_grad))
        with pytest.raises(NotImplementedError, match="gems::gelu_and_mul"):
            gems.gelu_and_mul(torch.ones(3, 8, requires_grad=requires_grad), approximate="tanh")
    with pytest.raises(NotImplementedError, match="gems::silu_and_mul_backward"):
        torch.ops.gems.silu_and_mul_backward(torch.ones(3, 4), torch.ones(3, 8))


@pytest.mark.parametrize("approximate", [None, "none", "tanh"])
def test_autograd_on_meta(gems, approximate):
    x = torch.empty(3, 5, 12, device="meta", dtype=torch.bfloat16, requires_grad=True)
    y = gems.silu_and_mul(x) if approximate is None else gems.gelu_and_mul(x, approximate=approximate)
    assert y.requires_grad and y.grad_fn is not None and y.shape == (3, 5, 6)
    (gx,) = torch.autograd.grad(y, x, torch.empty_like(y))
    assert gx.shape == x.shape and gx.dtype == x.dtype and gx.device.type == "meta"
    # No graph without grad mode or without requires_grad.
    with torch.no_grad():
        assert gems.silu_and_mul(x).grad_fn is None
    assert gems.silu_and_mul(x.detach()).grad_fn is None


def test_double_backward_raises(gems):
    x = torch.empty(4, 8, device="meta", requires_grad=True)
    for y, op in ((gems.silu_and_mul(x), "silu_and_mul_backward"),
                  (gems.gelu_and_mul(x, approximate="tanh"), "gelu_and_mul_backward")):
        (gx,) = torch.autograd.grad(y, x, torch.empty_like(y), create_graph=True)
        assert gx.requires_grad
        with pytest.raises(RuntimeError, match=f"gems::{op}: double backward is not supported"):
            torch.autograd.grad(gx.sum(), x)


def test_opcheck_on_meta(gems):
    x = torch.empty(4, 16, device="meta", requires_grad=True)
    g = torch.empty(4, 8, device="meta")
    for op, args in (
        (torch.ops.gems.silu_and_mul.default, (x,)),
        (torch.ops.gems.gelu_and_mul.default, (x, "tanh")),
        (torch.ops.gems.silu_and_mul_backward.default, (g, x.detach())),
        (torch.ops.gems.gelu_and_mul_backward.default, (g, x.detach(), "none")),
    ):
        result = torch.library.opcheck(op, args)
        assert set(result.values()) == {"SUCCESS"}, result


def test_fake_tensors(gems):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(8, 4, 64, dtype=torch.float16)
        out = gems.gelu_and_mul(x, "tanh")
    assert out.shape == (8, 4, 32) and out.dtype == torch.float16


def test_python_api(gems):
    assert "silu_and_mul" in gems.__all__ and "gelu_and_mul" in gems.__all__
    assert "silu" in gems.silu_and_mul.__doc__ and "approximate" in gems.gelu_and_mul.__doc__
    assert inspect.signature(gems.gelu_and_mul).parameters["approximate"].default == "none"
    x = torch.empty(2, 10, device="meta")
    assert gems.silu_and_mul(x).shape == (2, 5)

