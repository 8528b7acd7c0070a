"""The built extension on the CPU: schemas, Meta functions, the override switch, info, errors."""

import functools
import json
import os
import subprocess
import sys

import pytest
import torch

import gems_aot
from aot import ops, schemas

FAMILIES = ops.families()
DECLARED_OPS = [o for f in FAMILIES for o in f.gems_ops]
DECLARED_OVERRIDES = [o.name for f in FAMILIES for o in f.aten_overrides]
OPT_IN = [o.name for f in FAMILIES for o in f.aten_overrides if o.opt_in]


@pytest.fixture(autouse=True)
def restore_overrides():
    before = gems_aot.enabled_ops()
    yield
    gems_aot.enable(include=before) if before else gems_aot.disable()


@pytest.mark.parametrize("op", DECLARED_OPS, ids=lambda o: o.name)
def test_schema_registered(op):
    base, _, overload = op.name.partition(".")
    packet = getattr(torch.ops.gems, base)
    schema = getattr(packet, overload or "default")._schema
    assert str(schema) == str(schemas.parse("gems::" + op.schema))  # as torch prints it (0.0 as 0.)


def test_registered_ops_match_declarations():
    assert sorted(gems_aot.registered_ops()) == sorted(DECLARED_OVERRIDES)
    for name in DECLARED_OVERRIDES:
        base, _, overload = name.partition(".")
        assert getattr(getattr(torch.ops.aten, base), overload or "default") is not None
        # Decision 4: only ops with a CUDA kernel or an explicit composite one (copy_, isinf),
        # whose autograd kernel stays in front of ours; never a CompositeImplicitAutograd op.
        has = functools.partial(torch._C._dispatch_has_kernel_for_dispatch_key, f"aten::{name}")
        assert has("CUDA") or (has("CompositeExplicitAutograd") and has("Autograd")
                                and not has("CompositeImplicitAutograd")), name


def _has_gems_kernel(name):
    return "csrc/runtime/overrides.cpp" in torch._C._dispatch_dump(f"aten::{name}")


def test_enable_disable_state():
    gems_aot.disable()
    assert not gems_aot.is_enabled()
    assert not _has_gems_kernel("add.Tensor")
    enabled = gems_aot.enable()
    assert enabled == sorted(set(DECLARED_OVERRIDES) - set(OPT_IN)) == gems_aot.enabled_ops()
    assert _has_gems_kernel("add.Tensor") and _has_gems_kernel("mm")
    gems_aot.disable()
    assert gems_aot.enabled_ops() == [] and not _has_gems_kernel("add.Tensor")


def test_opt_in_overrides_need_naming():
    """Overrides measured slower than ATen (var and std today) are left out of enable()'s default
    selection, and run where include names them."""
    assert sorted(gems_aot.opt_in_ops()) == sorted(OPT_IN) and "var.correction" in OPT_IN
    assert "var.correction" in gems_aot.registered_ops()
    assert "var.correction" not in gems_aot.enable() and not _has_gems_kernel("var.correction")
    assert gems_aot.enable(include=["var"]) == ["var.correction", "var.correction_out"]
    assert _has_gems_kernel("var.correction")
    assert "std.correction" in gems_aot.enable(include=gems_aot.registered_ops())
    gems_aot.disable()


def test_include_exclude():
    assert gems_aot.enable(include=["add"]) == ["add.Tensor", "add.out", "add_.Tensor"]
    assert gems_aot.enable(include="mm.out") == ["mm.out"]
    assert gems_aot.enabled_ops() == ["mm.out"]  # enable replaces the selection
    everything_but_add = gems_aot.enable(exclude=["add", "relu_"])
    assert "add.Tensor" not in everything_but_add and "relu_" not in everything_but_add
    assert "relu" in everything_but_add and "sub.Tensor" in everything_but_add
    with pytest.raises(ValueError, match="unknown op 'addd'"):
        gems_aot.enable(include=["addd"])
    with pytest.raises(ValueError, match="exclude"):
        gems_aot.enable(exclude=["nope"])


def test_use_gems_restores_on_exit_error_and_nesting():
    gems_aot.disable()
    with gems_aot.use_gems(include=["add"]) as selected:
        assert selected == gems_aot.enabled_ops()
        with gems_aot.use_gems(include=["mm"]):
            assert gems_aot.enabled_ops() == ["mm", "mm.out"]
        assert gems_aot.enabled_ops() == selected
        with pytest.raises(KeyError):
            with gems_aot.use_gems():
                raise KeyError("boom")
        assert gems_aot.enabled_ops() == selected
    assert gems_aot.enabled_ops() == []


def test_cpu_ops_unaffected_by_enable():
    x, y = torch.randn(5, 3), torch.randn(5, 3)
    with gems_aot.use_gems():
        assert torch.equal(torch.add(x, y, alpha=2), x + 2 * y)
        assert torch.equal(torch.relu(x), x.clamp_min(0))
        assert torch.equal(torch.mm(x, y.t()), x @ y.t())


META_CASES = [
    ("add.Tensor", lambda m: (torch.empty(4, 1, 3, device=m), torch.empty(5, 1, device=m)), {"alpha": 2}),
    ("add.Tensor", lambda m: (torch.empty(2, 3, device=m, dtype=torch.float16), torch.empty((), device=m)), {}),
    ("add.Scalar", lambda m: (torch.empty(2, 3, device=m, dtype=torch.int32), 2.5), {}),
    ("sub.Tensor", lambda m: (torch.empty(2, 3, 4, device=m).permute(2, 0, 1), torch.empty(4, 2, 3, device=m)), {}),
    ("mul.Tensor", lambda m: (torch.empty(2, 3, device=m, dtype=torch.bfloat16),
                              torch.empty(2, 3, device=m, dtype=torch.float32)), {}),
    ("mul.Scalar", lambda m: (torch.empty(7, device=m, dtype=torch.int64), 3), {}),
    ("div.Tensor", lambda m: (torch.empty(2, 3, device=m, dtype=torch.int32), torch.empty(3, device=m,
                                                                                           dtype=torch.int64)), {}),
    ("div.Scalar", lambda m: (torch.empty(0, 7, device=m, dtype=torch.float16), 2), {}),
    ("relu", lambda m: (torch.empty(3, 4, 5, 6, device=m).to(memory_format=torch.channels_last),), {}),
    # A missing Tensor bound: the wrapped extreme must not widen the result (int32 stays int32).
    ("clamp.Tensor", lambda m: (torch.empty(2, 3, device=m, dtype=torch.int32), torch.empty(3, device=m,
                                                                                             dtype=torch.int32)), {}),
    ("clamp.Tensor", lambda m: (torch.empty(2, 3, device=m, dtype=torch.bfloat16), None,
                                torch.empty(2, 1, device=m)), {}),
    ("threshold", lambda m: (torch.empty(4, 5, device=m, dtype=torch.float16).t(), 0.1, 2), {}),
    ("isinf", lambda m: (torch.empty(3, 4, device=m, dtype=torch.int64),), {}),
]


@pytest.mark.parametrize("name,make,kwargs", META_CASES, ids=[c[0] for c in META_CASES])
def test_meta_matches_torch(name, make, kwargs):
    base, _, overload = name.partition(".")
    gems_op = getattr(getattr(torch.ops.gems, base), overload or "default")
    aten_op = getattr(getattr(torch.ops.aten, base), overload or "default")
    out = gems_op(*make("meta"), **kwargs)
    ref = aten_op(*make("cpu"), **kwargs)
    assert out.device.type == "meta"
    assert (out.shape, out.dtype, out.stride()) == (ref.shape, ref.dtype, ref.stride())


def test_meta_errors_like_torch():
    """The pointwise gems ops' Meta functions are the aten ops' own: the same error, word for word."""
    m = "meta"
    cases = [
        ("add", (torch.empty(3, device=m), torch.empty(4, device=m)), {}),
        ("add", (torch.empty(3, device=m, dtype=torch.int32), torch.empty(3, device=m, dtype=torch.int32)),
         {"alpha": 0.5}),
        ("sub", (torch.empty(3, device=m, dtype=torch.bool), torch.empty(3, device=m, dtype=torch.bool)), {}),
        ("clamp", (torch.empty(3, device=m), None, None), {}),  # clamp.Tensor with neither bound
    ]
    for name, args, kwargs in cases:
        raised = []
        for ns in (torch.ops.aten, torch.ops.gems):
            with pytest.raises(Exception) as info:
                getattr(ns, name)(*args, **kwargs)
            raised.append((info.type, str(info.value)))
        assert raised[0] == raised[1], name


def test_gems_op_works_under_fake_tensors_and_compile_tracing():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        a = torch.empty(8, 16)
        b = torch.empty(16)
        out = torch.ops.gems.add(a, b)
    assert out.shape == (8, 16)


def test_gems_op_rejects_cpu_tensors():
    # No CPU kernel is registered: the dispatcher says so instead of computing something.
    with pytest.raises(NotImplementedError, match="CPU"):
        torch.ops.gems.add(torch.ones(3), torch.ones(3))


def test_fallback_counts_api():
    gems_aot.reset_fallback_counts()
    assert gems_aot.fallback_counts() == {}


def test_fallback_warnings_switch():
    """Off by default, on with GEMS_AOT_WARN_FALLBACK=1 at import; the switch returns the old state."""
    assert gems_aot.warn_on_fallback(True) is False
    assert gems_aot.warn_on_fallback(False) is True
    probe = "import gems_aot; print(gems_aot.warn_on_fallback(False))"
    for value, expected in (("1", "True"), ("0", "False"), ("", "False")):
        env = {**os.environ, "GEMS_AOT_WARN_FALLBACK": value}
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
        assert out.stdout.strip() == expected, value


def test_info_without_gpu():
    data = gems_aot.info()
    assert data["torch"] == torch.__version__
    assert data["kernels"] > 0 and data["aten_overrides"] == len(DECLARED_OVERRIDES)
    assert data["cubin_bytes"] > 1000 * data["kernels"]
    assert all(n > 0 for n in data["images_per_target"].values())
    if not torch.cuda.is_available():
        assert data["device"] is None
    out = subprocess.run([sys.executable, "-m", "gems_aot", "info", "--json"], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout)["kernels"] == data["kernels"]
    text = subprocess.run([sys.executable, "-m", "gems_aot", "info"], capture_output=True, text=True, check=True)
    assert "images per target" in text.stdout

