"""The offline GEMM tuner's CPU side: the shape set, the table it writes from measurements, the
reproduction check, and the rules it shares with the C++ driver."""

import importlib.util
import json
import types

import pytest
import torch

from aot import gemm_tuning
from conftest import ROOT


def load_tuner():
    spec = importlib.util.spec_from_file_location("tune_gemm", ROOT / "build_tools/tune_gemm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


tuner = load_tuner()
shapes = tuner.load_shapes()
NAMES = [c.name for c in gemm_tuning.SM90_CANDIDATES]


def test_shape_set():
    cases = shapes.cases()
    groups = {c.group for c in cases}
    assert groups == {"train", "decode", "square", "batched"}
    assert {c.group for c in shapes.cases(shapes.TUNED_GROUPS)} == {"train", "decode", "square"}
    assert all(c.batch is None for c in cases if c.group != "batched")
    train = [c for c in cases if c.group == "train"]
    # Every layer has its forward, input gradient and weight gradient, at the aligned and the
    # uneven token count; every uneven case names an aligned neighbour that is in the set.
    assert {c.layout for c in train} == {"nt", "nn", "tn"}
    keys = {(c.m, c.n, c.k) for c in cases}
    uneven = [c for c in cases if c.neighbour]
    assert uneven and all(c.neighbour in keys for c in uneven)
    assert any(c.k == 3000 for c in uneven) and any(c.m == 3000 for c in uneven)
    assert {c.m for c in cases if c.group == "decode"} == set(shapes.DECODE_TOKENS)


def test_batched_group():
    """Attention's batched matmuls (scores, output, the gradient of V) at sequence lengths 1024
    and 128, the uneven 1000 beside its aligned neighbour, and grouped linear layers."""
    batched = shapes.cases(("batched",))
    assert batched and all(c.batch and c.batch >= 8 for c in batched)
    assert {c.layout for c in batched} == {"nt", "nn", "tn"}
    keys = {(c.batch, c.m, c.n, c.k, c.layout) for c in batched}
    uneven = [c for c in batched if c.neighbour]
    assert uneven and all((c.batch, *c.neighbour, c.layout) in keys for c in uneven)
    assert any(c.m == 1000 and c.n == 1000 for c in uneven)
    assert (32, 1024, 1024, 128, "nt") in keys and (64, 128, 128, 128, "nn") in keys
    assert shapes.Case("batched", "x", 2, 3, 4, "nn", batch=5).flop == 2.0 * 5 * 2 * 3 * 4


@pytest.mark.parametrize("batch", [None, 4])
@pytest.mark.parametrize("layout", ["nn", "nt", "tn", "tt"])
def test_operands_have_the_layout(layout, batch):
    case = shapes.Case("square", "x", 5, 7, 3, layout, batch=batch)
    a, b = shapes.operands(case, torch.float32, device="cpu")
    lead = () if batch is None else (batch,)
    assert a.shape == (*lead, 5, 3) and b.shape == (*lead, 3, 7)
    assert (a.stride(-1) == 1) == (layout[0] == "n") and (b.stride(-1) == 1) == (layout[1] == "n")


class FakeKernel:
    """Stands in for a @triton.jit kernel: records the launch."""

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.grid, self.args, self.kwargs = grid, args, kwargs
            return types.SimpleNamespace(metadata=types.SimpleNamespace(shared=1000, num_warps=4), n_regs=32)
        return launch


def fake_runner():
    runner = object.__new__(tuner.Runner)
    runner.torch, runner.sms, runner.resident = torch, 132, {}
    runner.props = types.SimpleNamespace()
    runner.gemm = types.SimpleNamespace(mm_tma_kernel=FakeKernel(), mm_kernel=FakeKernel())
    runner.family = types.SimpleNamespace(FP32_IEEE_CONFIG=(128, 128, 16, 8, 4, 3))
    return runner


def test_runner_passes_the_batch_arguments():
    """The tuner runs mm_tma_kernel through the JIT with the arguments the driver passes: an mm
    with the mm variants' batch arguments (batch 1, strides 0, BATCHED False), a bmm batched,
    an operand expanded over the batch with extent 1."""
    runner, cfg = fake_runner(), gemm_tuning.SM90_CANDIDATES[5]  # 128x128 tiles
    a, b, c = torch.empty(300, 64), torch.empty(64, 40), torch.empty(300, 40)
    runner.launch(cfg, a, b, c)
    k = runner.gemm.mm_tma_kernel
    assert k.args[6:15] == (300, 40, 64, 64, 40, 40, 0, 1.0, 0.0) and k.args[15:] == (1, 1, 1, 0, 0, 0, 0, 0)
    assert k.kwargs["BATCHED"] is False and k.grid == (3,)
    a, b = torch.empty(5, 300, 64), torch.empty(1, 40, 64).expand(5, 40, 64).transpose(1, 2)
    runner.launch(cfg, a, b, torch.empty(5, 300, 40))
    assert k.args[6:12] == (300, 40, 64, 64, 64, 40)
    assert k.args[15:] == (5, 5, 1, 300 * 64, 40 * 64, 300 * 40, 0, 0)  # B: extent 1, one matrix of 40 rows of 64
    assert k.kwargs["BATCHED"] is True and k.kwargs["B_ROW"] is False and k.grid == (15,)
    runner.launch_pointer(a[0], b[0], c)
    assert runner.gemm.mm_kernel.args[12:] == (0, 0, 0) and runner.gemm.mm_kernel.kwargs["BATCHED"] is False
    runner.launch_pointer(a, b, torch.empty(5, 300, 40))
    assert runner.gemm.mm_kernel.args[12:] == (300 * 64, 0, 300 * 40) and runner.gemm.mm_kernel.grid == (3, 5)


def test_runner_launches_skinny_as_the_driver():
    """A skinny configuration runs mm_skinny_kernel on a (tiles, splits) grid, split by the
    driver's rule, with zeroed counters; batched, its tile runs mm_tma_kernel at 64 rows."""
    runner = fake_runner()
    runner.gemm_skinny = types.SimpleNamespace(mm_skinny_kernel=FakeKernel())
    cfg = gemm_tuning.SKINNY_CANDIDATES[0]  # 16 x 64, BLOCK_K 256
    a, b, c = torch.empty(16, 4096), torch.empty(1024, 4096).t(), torch.empty(16, 1024)
    runner.launch(cfg, a, b, c)
    k = runner.gemm_skinny.mm_skinny_kernel
    splits = gemm_tuning.skinny_splits(16, 16, 132)
    assert k.grid == (16, splits) and splits == 8  # 9 wanted; 2 chunks each leave 8
    assert k.args[6:15] == (16, 1024, 4096, 4096, 4096, 1024, 0, 1.0, 0.0)
    assert k.args[5].dtype == torch.int32 and not k.args[5].any() and k.kwargs["SPLIT_K"] == 0
    assert k.kwargs["A_ROW"] is True and k.kwargs["B_ROW"] is False
    runner.launch(cfg, a[None].expand(3, 16, 4096), b[None].expand(3, 4096, 1024), torch.empty(3, 16, 1024))
    assert runner.gemm.mm_tma_kernel.kwargs["BLOCK_M"] == 64 and runner.gemm.mm_tma_kernel.kwargs["BATCHED"] is True


def test_batched_groups_are_not_tuned(tmp_path):
    with pytest.raises(SystemExit, match="not tuned"):
        tuner.measure(types.SimpleNamespace(out=tmp_path, groups="train,batched", classes="16bit", budget_s=1))


def test_tma_rule_is_the_drivers():
    """16-byte aligned bases and leading strides (in bytes), as csrc/ops/gemm.cpp tma_describes."""
    x = torch.empty(64, 64, dtype=torch.bfloat16)
    assert tuner.tma_can_describe(x, x.t(), x[:, :40])
    assert not tuner.tma_can_describe(torch.empty(8, 4095, dtype=torch.bfloat16))  # 8190-byte rows
    assert not tuner.tma_can_describe(x[:, 1:])  # base 2 bytes past an aligned one
    assert not tuner.tma_can_describe(torch.empty(1, 64, dtype=torch.bfloat16).expand(8, 64).t())  # lead 0
    batched = torch.empty(3, 64, 64, dtype=torch.bfloat16)
    assert tuner.tma_can_describe(batched, batched.transpose(1, 2), batched[:1].expand(3, 64, 64))
    assert not tuner.tma_can_describe(torch.empty(3 * 64 * 64 + 3, dtype=torch.bfloat16).as_strided(
        (3, 64, 64), (64 * 64 + 1, 64, 1)))  # batch stride 8194 bytes


def row(m, n, k, layout, cublas_ms, klass="16bit", pointer=None, **ms):
    configs = {NAMES[int(i[1:])]: {"ms": v} for i, v in ms.items()}
    if pointer is not None:
        configs = {tuner.POINTER: {"ms": pointer}}
    return {"class": klass, "group": "train", "name": f"{m}x{n}x{k}", "m": m, "n": n, "k": k, "layout": layout,
            "cublas_ms": cublas_ms, "configs": configs}


def measurements(tmp_path, rows, name="m.json"):
    data = {"arch": 90, "device": "test", "torch": torch.__version__, "triton": "x",
            "candidates": {k: {c.name: c.as_list() for c in v} for k, v in gemm_tuning.CANDIDATES.items()},
            "cases": rows}
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_table_keeps_the_fastest_and_routes_the_slow(tmp_path, monkeypatch):
    monkeypatch.setattr(gemm_tuning, "ROUTE_TO_ATEN", 0.95)
    rows = [row(4096, 4096, 4096, "nt", 1.0, c0=0.98, c1=1.2),  # c0 wins, 1.02x cuBLAS
            row(1, 4096, 4096, "nt", 1.0, c0=2.0, c10=1.04),  # c10 wins at 0.96x: kept
            row(4096, 512, 2048, "nn", 1.0, c0=1.5, c10=1.2),  # best 0.83x: ATen (c10 for gems::mm)
            row(8, 8, 8, "nn", 1.0),  # nothing ran: left out
            row(64, 64, 64, "nn", 1.0, klass="ieee", pointer=2.0)]  # exact fp32: routing only
    out = tmp_path / "sm90.json"
    tuner.table(types.SimpleNamespace(measurements=[measurements(tmp_path, rows)], table=out))
    table = json.loads(out.read_text())
    bf16 = table["classes"]["16bit"]
    assert bf16["config_names"] == [NAMES[0], NAMES[10]]  # in candidate order, only those chosen
    assert table["classes"]["ieee"] == {"configs": [], "config_names": []}
    assert [(r["class"], r["config"], r["aten"]) for r in table["rows"]] == [
        ("16bit", 0, False), ("16bit", 1, False), ("16bit", 1, True), ("ieee", 0, True)]
    assert [r["ratio"] for r in table["rows"]] == [round(1 / 0.98, 3), round(1 / 1.04, 3), round(1 / 1.2, 3), 0.5]
    assert gemm_tuning.TmaConfig.from_list(bf16["configs"][1]) == gemm_tuning.SM90_CANDIDATES[10]


def test_table_merges_runs_by_each_fastest_time(tmp_path):
    """Several runs of the same card: per case cuBLAS's and each configuration's fastest time, so a
    run slowed by a disturbance does not decide; a configuration that failed in one run and ran in
    another counts with its time."""
    first = [row(16, 2048, 2048, "nt", 1.0, c0=3.0, c1=1.1), row(4096, 4096, 4096, "nt", 1.0, c0=0.9)]
    second = [row(16, 2048, 2048, "nt", 1.2, c0=0.95, c1=1.3)]
    second[0]["configs"][NAMES[2]] = {"error": "OutOfResources"}
    first[0]["configs"][NAMES[2]] = {"ms": 2.0}
    out = tmp_path / "sm90.json"
    tuner.table(types.SimpleNamespace(measurements=[measurements(tmp_path, first, "a.json"),
                                                    measurements(tmp_path, second, "b.json")], table=out))
    rows = json.loads(out.read_text())["rows"]
    assert [(r["m"], r["ratio"]) for r in rows] == [(16, round(1 / 0.95, 3)), (4096, round(1 / 0.9, 3))]
    merged = tuner.merged([tmp_path / "a.json", tmp_path / "b.json"])
    assert merged["cases"][0]["configs"][NAMES[2]] == {"ms": 2.0} and merged["cases"][0]["cublas_ms"] == 1.0


def test_table_of_one_class_keeps_the_committed_others(tmp_path):
    out = tmp_path / "sm90.json"
    tuner.table(types.SimpleNamespace(measurements=[measurements(tmp_path, [
        row(4096, 4096, 4096, "nt", 1.0, c0=0.98), row(64, 64, 64, "nn", 1.0, klass="ieee", pointer=2.0)])], table=out))
    data = json.loads((tmp_path / "m.json").read_text())
    data["candidates"] = {"16bit": data["candidates"]["16bit"]}
    data["cases"] = [row(2048, 2048, 2048, "nn", 1.0, c1=0.9)]
    (tmp_path / "m.json").write_text(json.dumps(data))
    tuner.table(types.SimpleNamespace(measurements=[tmp_path / "m.json"], table=out))
    table = json.loads(out.read_text())
    assert list(table["classes"]) == ["16bit", "tf32", "ieee"]
    assert table["classes"]["16bit"]["config_names"] == [NAMES[1]]
    assert sorted((r["class"], r["m"]) for r in table["rows"]) == [("16bit", 2048), ("ieee", 64)]


def test_wgmma_configurations_round_trip_and_old_tables_read_as_tl():
    wg = next(c for c in gemm_tuning.SM90_CANDIDATES if c.kernel == "wgmma")
    assert gemm_tuning.TmaConfig.from_list(json.loads(json.dumps(wg.as_list()))) == wg
    assert wg.name.startswith("wg_") and len(set(NAMES)) == len(NAMES)
    assert gemm_tuning.TmaConfig.from_list([128, 256, 64, 8, 8, 3, 2, 0, 1]).kernel == "tl"


def test_check_accepts_noise_and_reports_a_changed_choice(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gemm_tuning, "ROUTE_TO_ATEN", 0.95)
    committed = tmp_path / "sm90.json"
    first = [row(4096, 4096, 4096, "nt", 1.0, c0=0.95, c1=1.0), row(2048, 2048, 2048, "nn", 1.0, c0=0.9, c1=1.0)]
    tuner.table(types.SimpleNamespace(measurements=[measurements(tmp_path, first)], table=committed))
    monkeypatch.setattr(gemm_tuning, "table_path", lambda arch: committed)
    # c1 now wins the first case by 1% (noise), and the second by 20% (a real change).
    again = [row(4096, 4096, 4096, "nt", 1.0, c0=0.95, c1=0.94), row(2048, 2048, 2048, "nn", 1.0, c0=0.9, c1=0.75)]
    rc = tuner.check(types.SimpleNamespace(measurements=[measurements(tmp_path, again)], noise=0.03))
    out = capsys.readouterr().out
    assert rc == 1 and "same choice 0, within 3% of the best 1, different 1" in out


def test_resident_programs_follows_the_tightest_resource():
    props = types.SimpleNamespace(shared_memory_per_multiprocessor=233472, regs_per_multiprocessor=65536,
                                  max_threads_per_multi_processor=2048)

    def kernel(shared, regs, warps):
        return types.SimpleNamespace(metadata=types.SimpleNamespace(shared=shared, num_warps=warps), n_regs=regs)

    assert tuner.resident_programs(kernel(180000, 168, 8), props) == 1  # shared memory
    assert tuner.resident_programs(kernel(60000, 128, 4), props) == 3  # shared: 233472 // 61024
    assert tuner.resident_programs(kernel(1000, 255, 4), props) == 2  # registers: 65536 // (256 * 32 * 4)
    assert tuner.resident_programs(kernel(0, 32, 4), props) == 16  # threads: 2048 // 128
