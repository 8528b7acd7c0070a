"""Every gems op's fake implementation traces symbolic shapes (torch.compile(dynamic=True),
torch.export) without specialising them: the ops that mirror an aten op (GemsOp.meta_from_aten)
have the aten op's fake implementation (gems_aot registers it at load), the fused family's C++
Meta functions compute with SymInts. Each op is traced on its declared example (GemsOp.example;
a pointwise op's from aot/pointwise/calls.py) with a ShapeEnv, as the compiler's tracing does, on
the CPU: fake tensors never run a kernel."""

import pytest
import sympy
import torch

gems = pytest.importorskip("gems_aot", reason="the extension is not built")

from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: E402
from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext  # noqa: E402

from aot import ops as declarations  # noqa: E402
from aot.pointwise import calls as pointwise_calls  # noqa: E402
from gems_aot import _library  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "i8": torch.int8, "u8": torch.uint8,
          "i16": torch.int16, "i32": torch.int32, "i64": torch.int64, "bool": torch.bool}
SCALE = 3  # the other sizes the symbolic shapes are checked at: every symbolic size times 3


def _declared():
    pointwise = pointwise_calls.examples()
    return {o.name: (o, o.example or pointwise.get(o.name)) for f in declarations.families() for o in f.gems_ops}


DECLARED = _declared()
FAMILY_OF = {o.name: f.module for f in declarations.families() for o in f.gems_ops}


def overload(name):
    base, _, ov = name.partition(".")
    return getattr(getattr(torch.ops.gems, base), ov or "default")


def is_symbolic(t: declarations.T, d: int) -> bool:
    """Sizes 0 and 1 are specialised by every tracer; static dims repeat an int argument."""
    return d not in t.static and t.shape[d] > 1


def scaled(t: declarations.T) -> tuple:
    return tuple(s * SCALE if is_symbolic(t, d) else s for d, s in enumerate(t.shape))


def arguments(op, example, make):
    """(args, kwargs) of the example's call, each T made a tensor by make(T), a dtype name passed
    for a ScalarType argument a torch dtype."""
    types_ = {a.name: str(a.real_type) for a in op._schema.arguments}
    names = [a.name for a in op._schema.arguments]

    def value(v, arg):
        if isinstance(v, declarations.T):
            return make(v)
        if isinstance(v, tuple):
            return [value(x, arg) for x in v]
        return DTYPES[v] if types_[arg].endswith("ScalarType") and isinstance(v, str) else v

    args = [value(v, names[i]) for i, v in enumerate(example.args)]
    return args, {k: value(v, k) for k, v in example.kwargs}


def results(out) -> list:
    if out is None:
        return []
    return [r for r in (out if isinstance(out, (tuple, list)) else (out,)) if r is not None]


def pins_a_symbol(expr) -> bool:
    """A guard Eq(s, 10): the symbol specialised to a value."""
    return isinstance(expr, sympy.Eq) and any(a.is_Symbol for a in expr.args) and any(a.is_number for a in expr.args)


def trace(name):
    """Runs gems op `name` on its example with symbolic sizes: (its results, the shape env, each
    input symbol's value at the scaled sizes)."""
    op, example = overload(name), DECLARED[name][1]
    env = ShapeEnv()
    mode = FakeTensorMode(shape_env=env)
    at_scale = {}

    def fake(t):
        dynamic = [DimDynamic.DYNAMIC if is_symbolic(t, d) else DimDynamic.STATIC for d in range(len(t.shape))]
        x = mode.from_tensor(torch.empty(t.shape, dtype=DTYPES[t.dtype]),
                             symbolic_context=StatelessSymbolicContext(dynamic_sizes=dynamic))
        for size, other in zip(x.shape, scaled(t)):
            if isinstance(size, torch.SymInt):
                at_scale[size.node.expr] = other
        return x

    args, kwargs = arguments(op, example, fake)
    with mode:
        out = op(*args, **kwargs)
    return results(out), env, at_scale


def test_every_gems_op_declares_an_example():
    missing = sorted(name for name, (_, example) in DECLARED.items() if example is None)
    assert not missing, f"gems ops without GemsOp.example: {missing}"


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_traces_without_specialising(name):
    """The results' shapes are expressions of the input symbols that give the op's shapes at other
    sizes too, and no guard pins a symbol to its example value."""
    out, env, at_scale = trace(name)
    pinned = {str(s): str(v) for s, v in env.replacements.items() if v.is_number}
    assert not pinned, f"gems::{name} specialised {pinned}"
    guards = [str(g.expr) for g in env.guards if pins_a_symbol(g.expr)]
    assert not guards, f"gems::{name} guards {guards}"
    op, example = overload(name), DECLARED[name][1]
    args, kwargs = arguments(op, example, lambda t: torch.empty(scaled(t), dtype=DTYPES[t.dtype], device="meta"))
    expected = results(op(*args, **kwargs))
    assert len(out) == len(expected)
    for r, e in zip(out, expected):
        shape = [int(sympy.sympify(s.node.expr if isinstance(s, torch.SymInt) else s).xreplace(at_scale))
                 for s in r.shape]
        assert shape == list(e.shape) and r.dtype == e.dtype, (name, r.shape, e.shape)


def test_every_gems_op_has_a_meta_path():
    """A C++ Meta kernel or a fake implementation: nothing reaches Meta tensors unserved; the
    fake implementations are exactly the declared aten ones."""
    from torch._library.simple_registry import singleton

    declared = {f"gems::{o.name}" for o, _ in DECLARED.values() if o.meta_from_aten}
    assert {f"gems::{n}" for n in _library.aten_fakes()} == declared
    for name, (o, _) in DECLARED.items():
        qualname = f"gems::{name}"
        assert torch._C._dispatch_has_kernel_for_dispatch_key(qualname, "Meta"), qualname
        assert (singleton.find(qualname).fake_impl.kernel is not None) == o.meta_from_aten, qualname


def test_build_checks_declared_aten_fakes():
    """meta_from_aten needs the aten op's arguments (int for SymInt is fine) and its fake."""
    from aot import codegen, schemas

    codegen._check_aten_fake(DECLARED["rms_norm"][0])
    with pytest.raises(ValueError, match="schema is not aten's"):
        codegen._check_aten_fake(declarations.GemsOp("mm(Tensor self, Tensor other) -> Tensor", True))
    tensor_lr = str(schemas.aten_schema("_fused_adam_.tensor_lr")).removeprefix("aten::")
    with pytest.raises(ValueError, match="no fake implementation"):
        codegen._check_aten_fake(declarations.GemsOp(tensor_lr, True))


def test_meta_tensors_still_served():
    out = torch.ops.gems.add(torch.empty(4, 1, 3, device="meta"), torch.empty(5, 1, device="meta"), alpha=2)
    assert out.shape == (4, 5, 3) and out.device.type == "meta"


def _opcheck_sample(per_family=6):
    """The first ops of each family, in declaration order: every op of the small families."""
    names = {}
    for name in DECLARED:
        names.setdefault(FAMILY_OF[name], []).append(name)
    return [n for family in names.values() for n in family[:per_family]]


@pytest.mark.parametrize("name", _opcheck_sample())
def test_opcheck_on_meta(name):
    """The schema and the fake implementation against the op's own Meta path (the CUDA parts of
    opcheck need a GPU)."""
    op, example = overload(name), DECLARED[name][1]
    args, kwargs = arguments(op, example, lambda t: torch.empty(t.shape, dtype=DTYPES[t.dtype], device="meta"))
    result = torch.library.opcheck(op, args, kwargs, test_utils=("test_schema", "test_faketensor"))
    assert set(result.values()) == {"SUCCESS"}, (name, result)


def _outputs(program):
    """The fake values of an exported program's outputs."""
    return [n.meta["val"] for n in [n for n in program.graph.nodes if n.op == "output"][0].args[0]]


def test_export_with_a_dynamic_batch():
    """torch.export keeps the token dim symbolic through pointwise and fused gems ops (CPU example
    inputs: export traces fake tensors and never runs a kernel)."""

    class Block(torch.nn.Module):
        def forward(self, x):
            h = torch.ops.gems.relu(torch.ops.gems.add.Tensor(x, x, alpha=2))
            return torch.ops.gems.silu_and_mul(h)

    program = torch.export.export(Block(), (torch.randn(6, 16),), dynamic_shapes=({0: torch.export.Dim("tokens")},))
    (out,) = _outputs(program)
    assert isinstance(out.shape[0], torch.SymInt) and out.shape[1] == 8


def test_export_keeps_tokens_dynamic_through_norm_matmul_softmax_rotary_sum():
    class Layer(torch.nn.Module):
        def forward(self, x, w, m, cos, sin):
            h = torch.ops.gems.rms_norm(x, [16], w, 1e-6)
            p = torch.ops.gems._softmax(torch.ops.gems.mm(h, m), 1, False)
            q = p.view(1, -1, 2, 16).transpose(1, 2)  # [batch 1, 2 heads, tokens, 16]
            q, k = torch.ops.gems.rotary_embedding(q, q, cos, sin)
            return torch.ops.gems.sum.dim_IntList(q, [1]), k

    tokens = torch.export.Dim("tokens", min=2)
    inputs = (torch.randn(6, 16), torch.randn(16), torch.randn(16, 32), torch.randn(1, 6, 16), torch.randn(1, 6, 16))
    program = torch.export.export(Layer(), inputs,
                                  dynamic_shapes=({0: tokens}, None, None, {1: tokens}, {1: tokens}))
    summed, k = _outputs(program)
    assert isinstance(summed.shape[1], torch.SymInt) and isinstance(k.shape[2], torch.SymInt)
    assert tuple(summed.shape[i] for i in (0, 2)) == (1, 16) and tuple(k.shape[i] for i in (0, 1, 3)) == (1, 2, 16)
    assert str(summed.shape[1]) == str(k.shape[2])  # one symbol: the token dim of x, cos and sin
