"""The coverage recorder (gems_aot.record, use_gems(record=True)) on the CPU: which calls it
records, how it reads each call's outcome from the extension's counters (here a fake that moves
them as gems' overrides would), the report, and the extension's recording switch."""

import collections
import json

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import gems_aot


class FakeOverrides(TorchDispatchMode):
    """Moves counters the way the extension's overrides would for the ops in `effects`:
    {aten op: [(counted overload, outcome)]}, outcome "none" (served), a fallback reason, or
    "transfer"."""

    def __init__(self, effects):
        super().__init__()
        self.effects = effects
        self.counts = collections.Counter()
        self.totals = [0, 0, 0]

    def bump(self, op, outcome):
        self.counts[(op, outcome)] += 1
        self.totals[0 if outcome == "none" else 2 if outcome == "transfer" else 1] += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        for op, outcome in self.effects.get(func.name().split("::")[1], []):
            self.bump(op, outcome)
        return func(*args, **(kwargs or {}))


def recorder_with(fake):
    return gems_aot.Recorder("cpu", totals=lambda: list(fake.totals), counts=lambda: dict(fake.counts))


def test_records_cpu_calls_and_what_launches_no_kernel():
    x = torch.randn(4, 8)
    with gems_aot.record(device_type="cpu") as rec:
        y = (x @ x.t()).relu().sum(1)
        x.t().contiguous().to(torch.float16)
        torch.empty(3)
        y[0].item()
    calls = {name: (r.calls, dict(r.outcomes)) for name, r in rec.ops.items()}
    assert calls == {
        "t": (2, {"no kernel": 2}), "mm": (1, {"aten": 1}), "relu": (1, {"aten": 1}),
        "sum.dim_IntList": (1, {"aten": 1}), "clone": (1, {"aten": 1}), "_to_copy": (1, {"aten": 1}),
        "empty.memory_format": (1, {"no kernel": 1}), "select.int": (1, {"no kernel": 1}),
        "_local_scalar_dense": (1, {"transfer": 1}),
    }
    s = rec.summary()
    assert (s["calls"], s["kernel_calls"], s["served_share"], s["ops"], s["kernel_ops"]) == (10, 5, 0.0, 9, 5)
    assert "gems has no cpu kernels" in rec.table()


def test_records_only_the_chosen_device():
    x = torch.randn(4)
    with gems_aot.record() as rec:  # CUDA by default
        torch.relu(x)
        torch.empty(2, device="meta").relu()
    assert dict(rec.ops) == {}
    with gems_aot.record("meta") as rec:
        torch.relu(x)
        torch.zeros(2, device="meta")  # a factory: recorded by its device argument
    assert set(rec.ops) == {"zeros"}


def test_outcomes_from_the_counters():
    fake = FakeOverrides({
        "relu": [("relu", "none")],
        "add.Tensor": [("add.Tensor", "dtype")],
        "_to_copy": [("copy_", "none")],  # not overridden itself: served through copy_
        "clone": [("copy_", "transfer")],
        "mul.Tensor": [("mul.Tensor", "none"), ("mul.Tensor", "none")],
        "cumsum": [("fill_.Scalar", "none")],  # an op with a CUDA kernel of its own: still ATen's
    })
    x = torch.randn(6)
    with fake, recorder_with(fake) as rec:
        torch.relu(x)
        x + x
        x.to(torch.float16)
        x.clone()
        fake.bump("relu", "none")  # counted outside any recorded call: nobody's outcome
        torch.mm(x.view(2, 3), x.view(3, 2))
        x * x
        x.cumsum(0)
    got = {n: (dict(r.outcomes), dict(r.fallback_reasons), dict(r.via), dict(r.inner)) for n, r in rec.ops.items()}
    assert got == {
        "relu": ({"gems": 1}, {}, {}, {}),
        "add.Tensor": ({"fallback": 1}, {"dtype": 1}, {}, {}),
        "_to_copy": ({"gems": 1}, {}, {"copy_": 1}, {}),
        "clone": ({"transfer": 1}, {}, {}, {}),
        "view": ({"no kernel": 2}, {}, {}, {}),
        "mm": ({"aten": 1}, {}, {}, {}),
        "mul.Tensor": ({"gems": 1}, {}, {}, {}),
        "cumsum": ({"aten": 1}, {}, {}, {"fill_.Scalar": 1}),
    }
    s = rec.summary()
    assert s["calls_by_outcome"] == {"gems": 3, "fallback": 1, "aten": 2, "no kernel": 2, "transfer": 1}
    assert s["kernel_calls"] == 6 and s["served_share"] == pytest.approx(3 / 6)
    assert s["ops_served_always"] == 3  # relu, _to_copy, mul.Tensor
    table = rec.table()
    assert "fallback: dtype x1" in table and "via copy_" in table and "inner fill_.Scalar" in table
    assert table.splitlines()[-1].startswith("9 calls of 8 aten ops on cpu; 6 launch kernels, of which gems served 3 (50.0%)")
    data = json.loads(json.dumps(rec.as_dict()))
    assert data["ops"]["add.Tensor"] == {"calls": 1, "outcomes": {"fallback": 1}, "fallback_reasons": {"dtype": 1},
                                         "via": {}, "inner": {}}


def test_report_prints_the_table(capsys):
    with gems_aot.record("cpu") as rec:
        torch.ones(3).neg()
    rec.report()
    assert capsys.readouterr().out == rec.table() + "\n"
    assert rec.table().splitlines()[0].split() == ["aten", "op", "calls", "gems", "fallback", "aten", "no",
                                                    "kernel", "transfer", "note"]


def test_recording_switch_nests_and_survives_errors():
    def recording():
        on = torch.ops.gems._set_recording(False)
        torch.ops.gems._set_recording(on)
        return on

    assert not recording()
    with gems_aot.record("cpu"):
        assert recording()
        with gems_aot.record("cpu"):
            assert recording()
        assert recording()
    assert not recording()
    with pytest.raises(ValueError), gems_aot.record("cpu"):
        raise ValueError
    assert not recording()
    assert torch.ops.gems._recorded_totals() == [0, 0, 0]  # no CUDA call ran


def test_use_gems_record_yields_a_recorder_and_restores_the_selection():
    gems_aot.enable(include=["mul"])
    try:
        with gems_aot.use_gems(include=["add", "relu"], record=True) as rec:
            assert gems_aot.enabled_ops() == rec.enabled
            assert isinstance(rec, gems_aot.Recorder) and rec.device_type == "cuda"
            assert {"add.Tensor", "relu", "relu_"} <= set(rec.enabled) and "mul.Tensor" not in rec.enabled
        assert gems_aot.enabled_ops() == sorted(o for o in gems_aot.registered_ops() if o.split(".")[0] in ("mul", "mul_"))
        with pytest.raises(ValueError, match="unknown op"), gems_aot.use_gems(include=["no_such_op"], record=True):
            pass
    finally:
        gems_aot.disable()
    assert not gems_aot.is_enabled()
