"""python -m gems_aot bench on the CPU: the cases the build embeds (every op, every dtype it has
kernels for, each a call ATen accepts), their inputs and work figures, selection and its
errors, and the report from measured-looking rows (measuring needs a GPU)."""

import io
import json

import pytest
import torch

from aot import ops as aot_ops
from aot import family_pointwise as fam
from aot.family_rowwise import NORMS
from gems_aot import _bench, _plots

CASES = _bench.cases()
BY_OP = {c["op"]: c for c in reversed(CASES)}  # an op's first case: its first functional overload
# CPU kernels ATen lacks (the benchmark runs on CUDA, where these exist).
CPU_MISSING = {("mm", "fp16"), ("gcd", "i32")}


def test_every_op_has_a_case_from_its_declaration():
    declared = [c for f in aot_ops.families() if f.bench_cases for c in f.bench_cases()]
    assert CASES == json.loads(json.dumps(declared))  # the extension's copy is the declarations'
    reductions = {"sum", "mean", "prod", "amax", "amin", "all", "any", "var", "std", "var_mean", "argmax", "argmax_all",
                  "max"}
    softmax = {"_softmax", "_log_softmax", "_softmax_backward_data", "_log_softmax_backward_data"}
    losses = {"nll_loss_forward", "nll_loss_backward", "cross_entropy", "mse_loss", "mse_loss_backward"}
    norms = {name for m in NORMS for name in m.aten_overrides} | {"rms_norm"}
    embeddings = {f"{op}_v{v}" for op in ("embedding", "embedding_dense_backward") for v in (32000, 128256)}
    assert {op.name for op in fam.OPS} | reductions | softmax | losses | norms | embeddings | {
        "mm", "mv", "dot", "silu_and_mul", "gelu_and_mul", "rotary_embedding"} == set(BY_OP)
    assert len({(c["op"], c["call"]) for c in CASES}) == len(CASES)
    # Ops whose functional overload is a composite reach gems through their out= form.
    assert BY_OP["abs"]["call"] == "abs" and BY_OP["frexp"]["call"] == "frexp.Tensor"
    assert [c["call"] for c in CASES if c["op"] == "add"] == ["add.Tensor", "add.Scalar"]
    for op in fam.OPS:
        assert set(BY_OP[op.name]["calls"]) == set(op.dtypes), op.name
    assert BY_OP["add"]["call"] == "add.Tensor" and BY_OP["fill"]["call"] == "fill_.Scalar"
    assert BY_OP["copy_to_bf16"]["call"] == "copy_" and BY_OP["silu_and_mul"]["call"] == "gems::silu_and_mul"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["op"])
def test_every_case_is_a_call_torch_accepts(case):
    """On CPU tensors, ATen runs each case's call (the aten side) at a small size, and its result
    has the case's result dtype and the shape the work figures assume."""
    for dtype, spec in case["calls"].items():
        if (case["op"], dtype) in CPU_MISSING or (case["op"], dtype) in _cpu_unsupported(case, dtype):
            continue
        n = 64 if case["kind"] == "matmul" else 4096
        inputs = _bench.make_inputs(case, dtype, n, device="cpu")
        assert [t.dtype for t in inputs] == [_bench.DTYPES[d] for d in spec["tensors"]]
        result = _bench.make_call(case, dtype, inputs)()
        # frexp: (mantissa, exponent), the figure counts the mantissa; rotary: (q, k), both counted.
        results = result if isinstance(result, tuple) else (result,)
        result = results[0]
        assert result.dtype == _bench.DTYPES[spec["out"]], (case["op"], dtype)
        amount, unit = _bench.work(case, dtype, inputs)
        if unit == "GB/s":
            read = sum(inputs[i].numel() * inputs[i].element_size() for i in spec["reads"])
            written = result.numel() * result.element_size()
            if case["kind"] == "rotary":
                written += sum(t.numel() * t.element_size() for t in results[1:])
            if case["kind"] == "norm":  # further results by role: fp32 statistics (on CUDA), weight-sized gradients
                assert [t.numel() for t in results[1:]] == [
                    inputs[0].shape[0] if r == "stat" else inputs[0].shape[-1] for r in case["writes"]], case["op"]
                written += sum(t.numel() * (4 if r == "stat" else result.element_size())
                               for t, r in zip(results[1:], case["writes"]))
            if case["kind"] == "embedding" and case["result"] == "gathered":
                read += written  # the gathered rows of the table
            assert amount * 1e9 == read + written, (case["op"], dtype)
        else:
            assert amount == 2 * 64**3 / 1e12


def _cpu_unsupported(case, dtype):
    """Calls whose CPU kernel rejects the dtype: not a defect of the case (ATen's CUDA kernel runs
    it; the GPU benchmark checks every call is served)."""
    inputs = _bench.make_inputs(case, dtype, 16 if case["kind"] != "matmul" else 4, device="cpu")
    try:
        _bench.make_call(case, dtype, inputs)()
    except (RuntimeError, NotImplementedError) as e:
        # ATen's CPU norms keep 16-bit statistics where its CUDA kernels take fp32 ones, and
        # _fused_rms_norm_backward has a CUDA kernel only.
        cpu_norm = case["kind"] == "norm" and ("expected scalar type" in str(e) or "Could not run" in str(e))
        if "not implemented for" in str(e) or cpu_norm:
            return {(case["op"], dtype)}
        raise
    return set()


def test_inputs_and_layouts():
    x, y = _bench.make_inputs(BY_OP["add"], "fp32", 1 << 20, device="cpu")
    assert x.shape == y.shape == (1024, 1024) and x.is_contiguous()
    assert 0.5 <= x.min() and x.max() <= 1.5
    (t, _) = _bench.make_inputs(BY_OP["add"], "fp32", 1 << 20, layout="transposed", device="cpu")
    assert t.shape == (1024, 1024) and t.stride() == (1, 1024)
    (i,) = _bench.make_inputs(BY_OP["neg"], "i32", 4096, device="cpu")[:1]
    assert i.dtype == torch.int32 and 1 <= i.min() and i.max() <= 7
    assert _bench.input_shapes("rows", 1, 1 << 24) == [(4096, 4096)]
    assert _bench.input_shapes("act_and_mul", 1, 1 << 24) == [(2048, 8192)]
    assert _bench.input_shapes("rowwise", 2, 4096 * 32000) == [(4096, 32000)] * 2
    assert _bench.input_shapes("rowwise", 1, 1 << 24) == [(4096, 4096)]
    assert _bench.input_shapes("rowwise", 1, 1024) == [(1, 1024)]
    assert _bench.input_shapes("matmul", 2, 512) == [(512, 512), (512, 512)]
    assert _bench.input_shapes("matvec", 2, 1 << 24) == [(4096, 4096), (4096,)]
    assert _bench.input_shapes("dot", 2, 1000) == [(1000,), (1000,)]
    assert _bench.input_shapes("norm", 3, (16384, 4096), ("x", "vec", "stat")) == [(16384, 4096), (4096,), (16384, 1)]
    assert _bench.input_shapes("norm", 1, 1 << 24) == [(4096, 4096)] and _bench.input_shapes("norm", 1, 1024) == [(1, 1024)]
    assert _bench.input_shapes("full", 1, 1 << 24) == [(1 << 24,)]
    assert _bench.input_shapes("rowwise_reduce", 1, 4096 * 32000) == [(4096, 32000)]
    a, v = _bench.make_inputs(BY_OP["mv"], "bf16", 1 << 20, layout="transposed", device="cpu")
    assert a.shape == (256, 4096) and a.stride() == (1, 256) and v.shape == (4096,)  # mv of a column-major A
    assert _bench._matrix(1 << 24) == 4096 and _bench._matrix(100) == 64


def test_fused_baseline_is_the_unfused_form():
    x = torch.randn(4, 16)
    ref = torch.nn.functional.gelu(x[:, :8], approximate="tanh") * x[:, 8:]
    torch.testing.assert_close(_bench.make_call(BY_OP["gelu_and_mul"], "fp32", [x])(), ref)


def test_selection_and_sizes():
    picked = _bench.select(CASES, ["add", "mm"], ["bf16", "i32"])
    assert [(c["call"], d) for c, d in picked] == [("add.Tensor", "bf16"), ("add.Tensor", "i32"), ("add.Scalar", "bf16"),
                                                   ("add.Scalar", "i32"), ("mm", "bf16")]
    assert len(_bench.select(CASES, None, ["fp32", "fp16", "bf16", "i32", "i64", "bool"])) == sum(
        len(c["calls"]) for c in CASES)
    default = _bench.select(CASES, None, None)  # every op: at fp32 and bf16, else its first dtype
    assert {c["op"] for c, _ in default} == set(BY_OP)
    assert [d for c, d in default if c["op"] == "add"] == ["fp32", "bf16"] * 2
    assert [d for c, d in default if c["op"] == "bitwise_and"] == ["i32"]
    with pytest.raises(ValueError, match="unknown ops \\['nope'\\]"):
        _bench.select(CASES, ["nope"], None)
    with pytest.raises(ValueError, match="unknown dtypes \\['fp8'\\]"):
        _bench.select(CASES, None, ["fp8"])
    assert [_bench.parse_size(s) for s in ("16M", "4k", "1000", "1G")] == [16 << 20, 4096, 1000, 1 << 30]
    assert _bench.parse_size("16384x4096") == (16384, 4096) and _bench.parse_size("4kx1k") == (4096, 1024)
    norm = BY_OP["native_layer_norm"]
    assert _bench.case_sizes(norm, None)[:2] == [(4096, 1024), (4096, 4096)]
    assert _bench.case_sizes(norm, [1 << 24]) == [1 << 24] and _bench.case_sizes(BY_OP["add"], None) == [16 << 20]
    assert _bench.case_sizes(BY_OP["mm"], [(64, 64)]) == [64]
    with pytest.raises(ValueError):
        _bench.parse_size("0")
    with pytest.raises(ValueError, match="unknown layouts"):
        _bench.run(["add"], None, [1024], ["diagonal"], None)


def fake_rows():
    return [
        {"op": "add", "call": "add.Tensor", "family": "pointwise", "dtype": "fp32", "served_by_gems": True,
         "host_us": {"aten": 8.0, "gems": 6.0, "flaggems": 60.0}, "flaggems_first_call_ms": 900.0,
         "device": {"16777216/contiguous": {"unit": "GB/s", "aten": 2900.0, "gems": 2950.0, "flaggems": 2800.0,
                                            "aten_ms": 0.0694, "gems_ms": 0.0682, "flaggems_ms": 0.0719}}},
        {"op": "mm", "call": "mm", "family": "gemm", "dtype": "fp32", "served_by_gems": False,
         "host_us": {"aten": 12.0, "gems": 10.0}, "flaggems_error": "failed: RuntimeError: nope",
         "device": {"4096/contiguous": {"unit": "TFLOP/s", "aten": 50.0, "gems": 40.0, "aten_ms": 2.7,
                                        "gems_ms": 3.4}}},
    ]


def test_summary_table_markdown_and_plots(tmp_path):
    rows = fake_rows()
    s = _bench.summarize(rows)
    assert s["gems"]["device_speed_geomean"] == pytest.approx((2950 / 2900 * 40 / 50) ** 0.5)
    assert s["gems"]["device_speed_min"] == pytest.approx(0.8)
    assert s["gems"]["host_time_max"] == pytest.approx(10 / 12) and not s["gems"]["all_served_by_gems"]
    assert s["flaggems"]["device_speed_min"] == pytest.approx(2800 / 2900)
    assert s["flaggems"]["host_time_geomean"] == pytest.approx(60 / 8)
    assert s["flaggems"]["first_call_ms_max"] == 900.0 and s["flaggems"]["not_measured"] == 1
    assert (s["gems"]["rows"], s["flaggems"]["rows"]) == (2, 1)
    lines = _bench.table(rows)
    assert lines[1] == ["add [add.Tensor]", "fp32", "6.00 / 8.00", "60.00", "900", "16777216/contiguous", "2950 / 2900 GB/s",
                        "1.017", "2800", "0.966"]
    assert lines[2][:2] == ["mm", "fp32"] and lines[2][3:5] == ["-", "-"] and lines[2][-2:] == ["-", "-"]
    md = _bench.markdown(rows, s, {"device": "H100", "torch": "2.x", "gems_aot": "0.1", "flaggems": None})
    assert "FlagGems not installed" in md and "- mm fp32: failed: RuntimeError: nope" in md
    assert "| gems device_speed_min | 0.8 |" in md
    if _plots.available():
        paths = _bench.plot(rows, tmp_path)
        assert [p.name for p in paths] == ["bench_ops_speedup_fp32.png", "bench_ops_host_fp32.png"]
        assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_progress_without_a_terminal():
    stream = io.StringIO()
    progress = _bench.Progress(20, stream)
    for i in range(20):
        progress.step(f"op{i}")
    lines = stream.getvalue().splitlines()
    assert lines == [f"[gems-aot bench] {k}/20 op{k - 1}" for k in range(2, 21, 2)]
