"""The model harness (gems_aot models) and its plots on the CPU: the whole pipeline on a tiny
model (gems has no CPU kernels, so both sides run ATen and must agree exactly), the loss-curve
agreement rule, the report, and failures."""

import json
import math

import pytest
import torch

from gems_aot import _harness, _plots
from gems_aot._models import DecoderConfig

TINY = _harness.HarnessConfig(
    models=("tiny_llama",), batch=2, prompt=8, new_tokens=8, train_batch=4, seq_len=16, steps=25, rounds=1,
    device="cpu", decoder=DecoderConfig(vocab_size=32, hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64,
                                        max_positions=32))
PNG = b"\x89PNG\r\n\x1a\n"


def test_pipeline_on_the_cpu(tmp_path):
    torch.manual_seed(0)
    res = _harness.run(TINY, tmp_path)
    r = res["models"]["tiny_llama"]
    inf, acc, tr = r["inference"], r["step_accuracy"], r["training"]
    assert inf["greedy_tokens_agree"] == 1.0 and inf["logits_max_abs_diff"] == 0.0
    assert all(v > 0 for side in ("prefill_tokens_per_s", "decode_tokens_per_s") for v in inf[side].values())
    # bf16 autocast differs from fp32 by a bf16-sized error, the same on both sides here.
    assert 0 < acc["aten_logits_max_error"] == acc["gems_logits_max_error"] < 0.05 * acc["logits_max_abs"]
    assert 0 < acc["aten_grad_max_error"] == acc["gems_grad_max_error"] < 0.05 * acc["grad_max_abs"]
    losses = tr["losses"]
    assert [len(v) for v in losses.values()] == [25, 25, 25]
    assert losses["gems"] == losses["aten"] != losses["aten_other_order"]
    assert tr["gems_gap_max"] == tr["gems_gap_mean"] == 0.0 < tr["noise_band_mean"] <= tr["noise_band_max"]
    assert tr["agree"]
    assert tr["final_loss"]["aten"] < losses["aten"][0] - 0.2  # it learns
    summary = r["coverage"]["summary"]
    assert summary["calls_by_outcome"]["gems"] == 0 and summary["kernel_calls"] > 50
    assert {"mm", "_log_softmax", "nll_loss_backward"} <= set(r["coverage"]["ops"])
    data = json.loads((tmp_path / "models.json").read_text())
    assert data["meta"]["device"] == "cpu" and data["meta"]["entropy_floor"] == pytest.approx(
        _harness.SyntheticTask(32, 16, 8).entropy_floor())
    md = (tmp_path / "models.md").read_text()
    assert "| tiny_llama |" in md and "coverage of one training step" in md
    if _plots.available():
        assert (tmp_path / "loss_tiny_llama.png").read_bytes()[:8] == PNG


def test_a_failing_model_is_reported_and_the_others_run(monkeypatch, tmp_path, capsys):
    def broken():
        raise RuntimeError("no such layer")

    monkeypatch.setattr(_harness, "builders", lambda decoder: {"tiny_llama": broken})
    res = _harness.run(TINY, tmp_path)
    assert res["models"] == {"tiny_llama": {"error": "RuntimeError: no such layer"}}
    assert "| tiny_llama | failed: RuntimeError: no such layer |" in (tmp_path / "models.md").read_text()
    assert "Traceback" in capsys.readouterr().err


def test_unknown_and_unavailable_models(monkeypatch, capsys):
    with pytest.raises(ValueError, match="unknown models \\['gpt5'\\]"):
        _harness.run(_harness.HarnessConfig(models=("gpt5",), device="cpu"), None)
    monkeypatch.setattr(_harness, "transformers_models", lambda decoder: {})
    res = _harness.run(_harness.HarnessConfig(models=("llama",), device="cpu"), None)
    assert res["models"] == {} and res["meta"]["not_available"] == ["llama"]
    assert "not run (transformers not installed?): llama" in capsys.readouterr().out


def test_smooth_and_curve_agreement():
    assert _harness.smooth([1.0, 3.0, 5.0], window=2) == [1.0, 2.0, 4.0]
    steps = 100
    base = [3.0 * math.exp(-i / 30) for i in range(steps)]
    other = [v + 0.1 * math.sin(i / 10) for i, v in enumerate(base)]  # slow: smoothing keeps it
    close = [v + 0.01 for v in base]
    far = [v + 0.5 for v in base]
    agree = _harness.curve_agreement(base, other, close)
    assert agree["agree"] and agree["gems_gap_max"] == pytest.approx(0.01) and agree["gems_gap_mean"] == pytest.approx(0.01)
    # The band is the gap of the smoothed curves past the first window.
    gaps = [abs(a - b) for a, b in zip(_harness.smooth(base), _harness.smooth(other))][_harness.SMOOTHING:]
    assert agree["noise_band_max"] == pytest.approx(max(gaps))
    assert agree["noise_band_mean"] == pytest.approx(sum(gaps) / len(gaps))
    assert not _harness.curve_agreement(base, other, far)["agree"]
    # A gap within the largest noise but above its mean does not agree either.
    assert not _harness.curve_agreement(base, other, [v + 0.9 * max(gaps) for v in base])["agree"]
    assert agree["final_loss"]["gems"] == pytest.approx(_harness.smooth(close)[-1])


def test_plots(tmp_path):
    pytest.importorskip("matplotlib")
    _plots.bars(tmp_path / "r.png", ["add", "mul"], {"gems": [1.2, 0.9], "FlagGems": [0.5, 0.4]}, "speed-up", "x",
                ratios=True)
    _plots.loss_curves(tmp_path / "l.png", {"a": [3.0, 2.0, 1.5]}, "loss", band=([2.9, 1.9, 1.4], [3.1, 2.1, 1.6]),
                       floor=1.0)
    for name in ("r.png", "l.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG


def test_plots_without_matplotlib(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert not _plots.available()
    with pytest.raises(ImportError, match="pip install 'gems-aot\\[bench\\]'"):
        _plots.loss_curves(tmp_path / "l.png", {"a": [1.0]}, "loss")


def test_speed_runs_end_to_end_on_the_cpu(tmp_path):
    """The realistic-size speed measurement, shrunk, on the CPU (ATen on both sides there)."""
    from gems_aot._harness import SpeedConfig, speed
    from gems_aot._models import DecoderConfig

    cfg = SpeedConfig(decoder=DecoderConfig(vocab_size=64, hidden=32, layers=1, heads=4, kv_heads=2, intermediate=48,
                                            max_positions=32),
                      batch=2, seq_lens=(8, 5), steps=1, rounds=1, device="cpu")
    result = speed(cfg, tmp_path)
    assert set(result["results"]) == {"2x8", "2x5"}
    for timings in result["results"].values():
        for label in ("train_step", "prefill"):
            t = timings[label]
            assert t["aten_ms"] > 0 and t["gems_ms"] > 0 and t["speedup"] == t["aten_ms"] / t["gems_ms"]
            assert t["patched_ms"] > 0 and t["patched_speedup"] == t["aten_ms"] / t["patched_ms"]
        assert timings["fallbacks_per_step"] == {}
    saved = json.loads((tmp_path / "speed.json").read_text())
    assert saved["meta"]["decoder"]["hidden"] == 32 and saved["meta"]["batch"] == 2
    text = (tmp_path / "speed.md").read_text()
    assert "| 2x5 |" in text and "With gems_aot.patch(model, optimizer) as well (" in text
