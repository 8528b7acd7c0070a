"""Every gems op's fake implementation traces symbolic shapes (torch.compile(dynamic=True),
torch.export): the pointwise ops' are the aten ops' own (gems_aot registers them at load), the
other families' C++ Meta functions compute with SymInts. Runs on the CPU with fake CUDA tensors
and a ShapeEnv, as the compiler's tracing does."""

import pytest
import torch

gems = pytest.importorskip("gems_aot", reason="the extension is not built")

from gems_aot import _library  # noqa: E402


def takes_tensors(qualname):
    name, _, overload = qualname.split("::", 1)[1].partition(".")
    schema = getattr(getattr(torch.ops.gems, name), overload or "default")._schema
    return any("Tensor" in str(a.type) for a in schema.arguments)


def gems_ops():
    """Every gems op with tensor arguments (not the library's own queries: _bench_cases, ...)."""
    return sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("gems::") and takes_tensors(n))


def test_every_gems_op_has_a_meta_path():
    """A C++ Meta kernel or a fake implementation: nothing reaches Meta tensors unserved."""
    from torch._library.simple_registry import singleton

    for qualname in gems_ops():
        has_meta = torch._C._dispatch_has_kernel_for_dispatch_key(qualname, "Meta")
        assert has_meta, qualname  # register_fake registers a Meta kernel too
        fake = singleton.find(qualname).fake_impl.kernel
        assert fake is None or _library._aten_mirror(qualname) is not None, qualname


def test_pointwise_ops_have_aten_fakes():
    from torch._library.simple_registry import singleton

    for name in ("gems::add.Tensor", "gems::mul.Scalar", "gems::relu", "gems::where.self", "gems::clamp.Tensor"):
        assert singleton.find(name).fake_impl.kernel is not None, name


def symbolic(*shapes):
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext

    mode = FakeTensorMode(shape_env=ShapeEnv())
    tensors = [mode.from_tensor(torch.empty(s), symbolic_context=StatelessSymbolicContext(
        dynamic_sizes=[DimDynamic.DYNAMIC] * len(s))) for s in shapes]
    return mode, tensors


def test_symbolic_shapes_trace():
    mode, (x, y, v) = symbolic((6, 10), (6, 10), (10,))
    with mode:
        cases = {
            "add": torch.ops.gems.add.Tensor(x, v, alpha=2),
            "mul": torch.ops.gems.mul.Tensor(x, y),
            "relu": torch.ops.gems.relu(x),
            "where": torch.ops.gems.where.self(torch.ops.gems.gt.Tensor(x, y), x, y),
            "clamp": torch.ops.gems.clamp(x, 0.0, 1.0),
            "sum": torch.ops.gems.sum.dim_IntList(x, [1]),
            "mm": torch.ops.gems.mm(x, y.t()),
            "softmax": torch.ops.gems._softmax(x, 1, False),
        }
        shapes = {k: tuple(r.shape) for k, r in cases.items()}
    assert all(isinstance(s, torch.SymInt) for s in x.shape)
    assert shapes["add"] == tuple(x.shape) and shapes["sum"] == (x.shape[0],)
    assert shapes["mm"] == (x.shape[0], y.shape[0])
    assert cases["where"].dtype == torch.float32 and cases["clamp"].dtype == torch.float32


def test_meta_tensors_still_served():
    out = torch.ops.gems.add(torch.empty(4, 1, 3, device="meta"), torch.empty(5, 1, device="meta"), alpha=2)
    assert out.shape == (4, 5, 3) and out.device.type == "meta"


def test_opcheck_on_meta():
    x = torch.empty(4, 8, device="meta")
    for op, args in ((torch.ops.gems.add.Tensor, (x, x)), (torch.ops.gems.sigmoid.default, (x,)),
                     (torch.ops.gems.mul.Scalar, (x, 3))):
        result = torch.library.opcheck(op, args)
        assert set(result.values()) == {"SUCCESS"}, (op, result)


def test_export_with_a_dynamic_batch():
    """torch.export keeps the token dim symbolic through pointwise and fused gems ops (CPU example
    inputs: export traces fake tensors and never runs a kernel)."""

    class Block(torch.nn.Module):
        def forward(self, x):
            h = torch.ops.gems.relu(torch.ops.gems.add.Tensor(x, x, alpha=2))
            return torch.ops.gems.silu_and_mul(h)

    program = torch.export.export(Block(), (torch.randn(6, 16),), dynamic_shapes=({0: torch.export.Dim("tokens")},))
    (out,) = [n for n in program.graph.nodes if n.op == "output"][0].args[0]
    assert isinstance(out.meta["val"].shape[0], torch.SymInt) and out.meta["val"].shape[1] == 8
