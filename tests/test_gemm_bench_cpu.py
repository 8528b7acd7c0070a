"""`python -m gems_aot bench --family gemm`: the summary it prints, from rows made up here."""

import math

import pytest

gemm_bench = pytest.importorskip("gems_aot._gemm_bench")


def row(name, m, n, k, layout, kernel, public=None, group="train", routed=False, dtype="bfloat16", neighbour=None,
        batch=None):
    return {"group": group, "name": name, "batch": batch, "m": m, "n": n, "k": k, "layout": layout, "dtype": dtype,
            "neighbour": neighbour, "cublas_tflops": 700.0, "kernel_tflops": 700.0 * kernel,
            "public_tflops": 700.0 * (public or kernel), "kernel_vs_cublas": kernel,
            "public_vs_cublas": public or kernel, "routed_to_aten": routed}


def test_summary_means_served_share_and_cliffs():
    rows = [row("a fwd", 4096, 2048, 2048, "nt", 1.0), row("a dgrad", 4096, 2048, 2048, "nn", 0.8, 1.0, routed=True),
            row("a fwd uneven", 3000, 2048, 2048, "nt", 0.85, neighbour=(4096, 2048, 2048)),
            row("d", 1, 2048, 2048, "nt", 0.5, group="decode"),
            row("sq", 4096, 4096, 4096, "nn", 0.97, group="square"),
            row("sq32", 4096, 4096, 4096, "nn", 0.9, group="square", dtype="float32")]
    s = gemm_bench.summarize(rows)
    assert s["train_kernel_vs_cublas"] == pytest.approx((1.0 * 0.8 * 0.85) ** (1 / 3))
    assert s["train_served_kernel_vs_cublas"] == pytest.approx(math.sqrt(0.85))
    assert s["train_min_served"] == 0.85 and s["train_served_share"] == pytest.approx(2 / 3)
    assert s["train_public_vs_cublas"] == pytest.approx((1.0 * 1.0 * 0.85) ** (1 / 3))
    assert s["decode_kernel_vs_cublas"] == 0.5 and s["square_kernel_vs_cublas"] == {"4096": 0.97}
    assert s["fp32_tf32_kernel_vs_cublas"] == pytest.approx(0.9)
    assert s["cliffs_checked"] == 1
    assert [c["name"] for c in s["cliffs_beyond_tolerance"]] == ["a fwd uneven"]  # 15% below its neighbour
    text = gemm_bench.markdown(rows, s, {"device": "test", "torch": "x"})
    assert "| a dgrad | 4096x2048x2048 | nn | bfloat16 | 700 | 560 | 0.800 | 1.000 | yes |" in text
    assert "| uneven cases more than 10% below their aligned neighbour | 1 of 1 |" in text


def test_batched_rows_are_summarized_and_matched_with_their_own_batch():
    """bmm rows (the batched group): their own geometric means, and an uneven sequence length
    compared with the aligned case of the same batch only (an mm of the same M, N, K is no
    neighbour)."""
    rows = [row("mm", 1024, 1024, 128, "nt", 1.0),
            row("scores", 1024, 1024, 128, "nt", 0.8, 1.0, group="batched", routed=True, batch=32),
            row("scores uneven", 1000, 1000, 128, "nt", 0.6, group="batched", batch=32, neighbour=(1024, 1024, 128))]
    s = gemm_bench.summarize(rows)
    assert s["batched_kernel_vs_cublas"] == pytest.approx(math.sqrt(0.8 * 0.6))
    assert s["batched_public_vs_cublas"] == pytest.approx(math.sqrt(1.0 * 0.6))
    assert s["cliffs_checked"] == 1 and s["cliffs_beyond_tolerance"][0]["change"] == pytest.approx(0.6 / 0.8 - 1)
    assert s["cliffs_beyond_tolerance"][0]["neighbour"] == "32x1024x1024x128"
    text = gemm_bench.markdown(rows, s, {"device": "test", "torch": "x"})
    assert "| scores uneven | 32x1000x1000x128 | nt | bfloat16 | 700 | 420 | 0.600 | 0.600 |  |" in text
    assert "| batched (bmm), kernel / cuBLAS (geomean) | 0.693 |" in text
