"""The coverage recorder on the GPU: the outcome of real calls, read from the extension's
counters, forward and backward."""

import pytest
import torch

import gems_aot
from conftest import requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]


def outcomes(rec):
    return {name: dict(r.outcomes) for name, r in rec.ops.items()}


def test_outcomes_of_real_calls():
    x = torch.randn(64, device="cuda")
    x64 = x.double()
    gems_aot.reset_fallback_counts()
    with gems_aot.use_gems(record=True) as rec:
        torch.relu(x)
        x64 + x64  # no fp64 variants: ATen's kernel, through the override
        x.to(torch.float16)  # _to_copy is not overridden; its copy_ is
        x.cpu()  # _to_copy again, whose copy_ is a transfer
        torch.cumsum(x, 0)  # no gems override
        gems_aot.silu_and_mul(x.view(8, 8))
    got = outcomes(rec)
    assert got["relu"] == {"gems": 1}
    assert got["add.Tensor"] == {"fallback": 1} and dict(rec.ops["add.Tensor"].fallback_reasons) == {"dtype": 1}
    assert got["_to_copy"] == {"gems": 1, "transfer": 1} and dict(rec.ops["_to_copy"].via) == {"copy_": 1}
    assert got["cumsum"] == {"aten": 1} and "no gems kernel" in rec.table()
    assert got["silu_and_mul"] == {"gems": 1}
    # Served calls are counted while recording, but fallback_counts() reports fallbacks only.
    assert gems_aot.fallback_counts() == {("add.Tensor", "dtype"): 1}


def test_not_enabled_and_backward():
    x = torch.randn(32, 32, device="cuda", requires_grad=True)
    with gems_aot.use_gems(include=["mul"], record=True) as rec:
        (torch.relu(x) * 2).sum().backward()
    got = outcomes(rec)
    assert got["relu"] == {"aten": 1} and "not enabled" in rec.table()
    assert got["mul.Tensor"] == {"gems": 2}  # forward, and its backward (grad * 2)
    assert "threshold_backward" in got  # recorded on the autograd engine's thread too


def test_record_without_gems_enabled():
    x = torch.randn(16, device="cuda")
    with gems_aot.record() as rec:
        torch.exp(x)
    assert outcomes(rec) == {"exp": {"aten": 1}}
