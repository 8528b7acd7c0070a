"""Model-level harness: gems against ATen on whole models, in one run on one GPU.

    python -m gems_aot models --out DIR [--models tiny_llama,llama,qwen2,gpt2] [--steps 300]

Per model (the built-in TinyLlama; Hugging Face Llama / Qwen2 / GPT-2 of the same small size
when transformers is installed; random weights, nothing downloaded):

- inference in bf16: prefill tokens/s and greedy-generation tokens/s (new tokens over the whole
  generation, prefill included) with gems enabled and with ATen
  (interleaved rounds, the fastest of each kept), the largest logit difference and the share of
  generated tokens that agree;
- accuracy of one training step (fp32 weights, bf16 autocast, as mixed-precision training runs):
  the logits' and the gradients' largest error against an fp32 ATen reference, for ATen and for
  gems, so gems' error reads next to ATen's own;
- a training run of `steps` AdamW steps on a fixed synthetic task (`SyntheticTask`) three times
  from the same initial weights: ATen with data order 0, ATen with data order 1, and gems with data
  order 0. The two ATen runs measure the noise band: the gap between their smoothed loss curves
  (mean and largest). The gems run agrees when its gap to ATen's run on the same data order is
  within the band (mean and largest); ms per step of each run comes with it;
- the coverage report (`gems_aot.use_gems(record=True)`) of one training step and one decode
  step.

Writes models.json, models.md and loss_<model>.png (with matplotlib) to the output folder.

    python -m gems_aot models --speed --out DIR

measures speed at a realistic size instead (`SpeedConfig`: the Llama of hidden 2048, 8 layers,
16 / 4 heads, vocabulary 32000 (--vocab), bf16 weights, batch 4 x 1024 tokens (--seq-lens), AdamW;
Hugging Face's LlamaForCausalLM, trained through its own loss (labels=), where transformers is
installed, else the built-in TinyLlama at that size):
ms per training step and per prefill, gems enabled against ATen, rounds interleaved, also at an
uneven token count (4 x 750), with the fallbacks of a gems step; then the same with
`gems_aot.patch(model, optimizer)` on top of `enable()`, and each side's peak memory of a training step.
Small models are host-bound and
hide device-side losses; this is the figure that says whether enabling gems makes a model faster.
Writes speed.json and speed.md.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import pathlib
import time
import traceback
from typing import Callable, Optional

import torch
import torch.nn.functional as F

import gems_aot
from gems_aot import _plots
from gems_aot._models import (DecoderConfig, SyntheticTask, TinyLlama, generate_greedy, logits_of,
                              transformers_models)

SMOOTHING = 20  # steps in the moving average of a loss curve
MODELS = ("tiny_llama", "llama", "qwen2", "gpt2")  # the last three need transformers


@dataclasses.dataclass
class HarnessConfig:
    models: tuple[str, ...] = MODELS
    batch: int = 8  # inference sequences
    prompt: int = 128
    new_tokens: int = 32
    train_batch: int = 16
    seq_len: int = 128
    steps: int = 300
    lr: float = 3e-3
    rounds: int = 3  # interleaved timing rounds per side
    decoder: DecoderConfig = dataclasses.field(default_factory=DecoderConfig)
    device: str = "cuda"  # gems kernels run on CUDA only; another device runs ATen on both sides


def builders(decoder: DecoderConfig) -> dict[str, Callable[[], torch.nn.Module]]:
    """The models the harness knows: the built-in one, and transformers' where installed."""
    return {"tiny_llama": lambda: TinyLlama(decoder), **transformers_models(decoder)}


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _seconds(fn: Callable[[], object], reps: int, device: str) -> float:
    fn()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    _synchronize(device)
    return (time.perf_counter() - start) / reps


def _aten_and_gems_seconds(fn: Callable[[], object], cfg: HarnessConfig, reps: int) -> tuple[float, float]:
    """The fastest round of each side, ATen and gems rounds interleaved (host timings drift)."""
    aten, gems = [], []
    for _ in range(cfg.rounds):
        with gems_aot.use_gems(include=[]):
            aten.append(_seconds(fn, reps, cfg.device))
        with gems_aot.use_gems():
            gems.append(_seconds(fn, reps, cfg.device))
    return min(aten), min(gems)


def _max_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return (got.float() - want.float()).abs().max().item()


def inference(model: torch.nn.Module, cfg: HarnessConfig) -> dict:
    vocab = cfg.decoder.vocab_size
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(vocab, (cfg.batch, cfg.prompt), generator=generator).to(cfg.device)
    with torch.inference_mode():
        prefill = lambda: logits_of(model, ids)  # noqa: E731
        generate = lambda: generate_greedy(model, ids, cfg.new_tokens)  # noqa: E731
        prefill_s = _aten_and_gems_seconds(prefill, cfg, reps=5)
        generate_s = _aten_and_gems_seconds(generate, cfg, reps=2)
        with gems_aot.use_gems(include=[]):
            ref_logits, ref_tokens = prefill(), generate()
        with gems_aot.use_gems():
            logits, tokens = prefill(), generate()
    # Generation throughput: the new tokens over the whole generation's time, prefill included.
    # (Generation minus prefill, two separately timed minima, went negative under CPU load.)
    decode_s = generate_s
    return {
        "prefill_tokens_per_s": {"aten": cfg.batch * cfg.prompt / prefill_s[0], "gems": cfg.batch * cfg.prompt / prefill_s[1]},
        "decode_tokens_per_s": {"aten": cfg.batch * cfg.new_tokens / decode_s[0],
                                "gems": cfg.batch * cfg.new_tokens / decode_s[1]},
        "logits_max_abs_diff": _max_error(logits, ref_logits),
        "logits_max_abs": ref_logits.float().abs().max().item(),
        "greedy_tokens_agree": (tokens == ref_tokens).float().mean().item(),
    }


def _loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, autocast: bool) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = logits_of(model, x)
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten()), logits


def step_accuracy(model: torch.nn.Module, task: SyntheticTask, cfg: HarnessConfig) -> dict:
    """Logits and gradients of one bf16-autocast step, ATen's and gems', against fp32 ATen."""
    x, y = (t.to(cfg.device) for t in next(task.batches(cfg.train_batch, 1, order_seed=0)))
    results = {}
    for name, include, autocast in (("fp32", [], False), ("aten", [], True), ("gems", None, True)):
        m = copy.deepcopy(model)
        with gems_aot.use_gems(include=include):
            loss, logits = _loss(m, x, y, autocast)
            loss.backward()
        results[name] = (logits.float(), [p.grad.float() for p in m.parameters()])
    ref_logits, ref_grads = results["fp32"]
    grad_scale = max(g.abs().max().item() for g in ref_grads)
    out = {"logits_max_abs": ref_logits.abs().max().item(), "grad_max_abs": grad_scale}
    for name in ("aten", "gems"):
        logits, grads = results[name]
        out[f"{name}_logits_max_error"] = _max_error(logits, ref_logits)
        out[f"{name}_grad_max_error"] = max(_max_error(g, r) for g, r in zip(grads, ref_grads))
    return out


def train_run(model: torch.nn.Module, task: SyntheticTask, cfg: HarnessConfig, order_seed: int,
              gems: bool) -> tuple[list[float], float]:
    """Losses of `steps` AdamW steps from a copy of model, and the ms per step."""
    m = copy.deepcopy(model)
    opt = torch.optim.AdamW(m.parameters(), lr=cfg.lr)
    batches = [(x.to(cfg.device), y.to(cfg.device)) for x, y in task.batches(cfg.train_batch, cfg.steps, order_seed)]
    losses = []
    with gems_aot.use_gems(include=None if gems else []):
        _synchronize(cfg.device)
        start = time.perf_counter()
        for x, y in batches:
            loss, _ = _loss(m, x, y, autocast=True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        _synchronize(cfg.device)
        ms = (time.perf_counter() - start) / cfg.steps * 1e3
    return torch.stack(losses).tolist(), ms


def smooth(values: list[float], window: int = SMOOTHING) -> list[float]:
    """Trailing moving average (the first window - 1 points average what exists so far)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def curve_agreement(aten: list[float], aten_other_order: list[float], gems: list[float]) -> dict:
    """The noise band: the gap between the two ATen runs' smoothed curves past the first window,
    its mean and its largest value; gems' gap to ATen on the same data order, likewise. They agree
    when gems' mean gap and largest gap are both within the band's."""
    a, b, g = smooth(aten), smooth(aten_other_order), smooth(gems)
    start = min(SMOOTHING, len(a) - 1)
    noise = [abs(x - y) for x, y in zip(a[start:], b[start:])]
    gap = [abs(x - y) for x, y in zip(a[start:], g[start:])]
    result = {"noise_band_mean": sum(noise) / len(noise), "noise_band_max": max(noise),
              "gems_gap_mean": sum(gap) / len(gap), "gems_gap_max": max(gap)}
    result["agree"] = (result["gems_gap_mean"] <= result["noise_band_mean"]
                       and result["gems_gap_max"] <= result["noise_band_max"])
    result["final_loss"] = {"aten": a[-1], "aten_other_order": b[-1], "gems": g[-1]}
    return result


def coverage(model: torch.nn.Module, task: SyntheticTask, cfg: HarnessConfig) -> gems_aot.Recorder:
    """The aten calls of one training step and one prefill + decode step, with gems enabled."""
    m = copy.deepcopy(model)
    opt = torch.optim.AdamW(m.parameters(), lr=cfg.lr)
    x, y = (t.to(cfg.device) for t in next(task.batches(cfg.train_batch, 1, order_seed=0)))
    with gems_aot.use_gems() as enabled, gems_aot.record(cfg.device) as rec:
        rec.enabled = enabled
        loss, _ = _loss(m, x, y, autocast=True)
        loss.backward()
        opt.step()
        with torch.inference_mode():
            generate_greedy(m.to(torch.bfloat16), x[:, :16], 2)
    return rec


def run_model(name: str, build: Callable[[], torch.nn.Module], cfg: HarnessConfig, task: SyntheticTask) -> dict:
    torch.manual_seed(0)
    model = build().to(cfg.device).eval()
    result = {"parameters": sum(p.numel() for p in model.parameters())}
    result["inference"] = inference(copy.deepcopy(model).to(torch.bfloat16), cfg)
    result["step_accuracy"] = step_accuracy(model, task, cfg)
    model.train()
    warm = dataclasses.replace(cfg, steps=3)  # one-time costs (library handles, allocator) out of the timings
    train_run(model, task, warm, 0, gems=False)
    train_run(model, task, warm, 0, gems=True)
    gems_aot.reset_fallback_counts()
    runs = {}
    for label, order, gems in (("aten", 0, False), ("aten_other_order", 1, False), ("gems", 0, True)):
        runs[label] = train_run(model, task, cfg, order, gems)
    result["fallbacks_in_training"] = {f"{op} ({reason})": n for (op, reason), n in gems_aot.fallback_counts().items()}
    result["training"] = {
        "ms_per_step": {label: ms for label, (_, ms) in runs.items()},
        **curve_agreement(runs["aten"][0], runs["aten_other_order"][0], runs["gems"][0]),
        "losses": {label: losses for label, (losses, _) in runs.items()},
    }
    rec = coverage(model, task, cfg)
    result["coverage"] = rec.as_dict()
    result["coverage_table"] = rec.table()
    return result


def _plot_losses(path: pathlib.Path, name: str, training: dict, floor: float) -> None:
    losses = training["losses"]
    aten = smooth(losses["aten"])
    noise = training["noise_band_mean"]
    _plots.loss_curves(
        path, {"ATen, data order 0": aten, "ATen, data order 1": smooth(losses["aten_other_order"]),
               "gems, data order 0": smooth(losses["gems"])},
        title=f"{name}: training loss ({SMOOTHING}-step mean), bf16 autocast, AdamW",
        band=([v - noise for v in aten], [v + noise for v in aten]), band_label="ATen ± mean noise band", floor=floor)


def markdown(results: dict, meta: dict) -> str:
    lines = [f"Device: {meta['device']}, torch {meta['torch']}, gems_aot {meta['gems_aot']}", "",
             "| model | params | prefill tok/s gems / ATen | generation tok/s gems / ATen | train ms/step gems / ATen "
             "| logits err gems / ATen (vs fp32) | grad err gems / ATen (vs fp32) | loss noise / gems gap (mean) | agree "
             "| gems share of kernel calls |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} |" + " |" * 8)
            continue
        inf, acc, tr = r["inference"], r["step_accuracy"], r["training"]
        share = r["coverage"]["summary"]["served_share"]
        lines.append(
            f"| {name} | {r['parameters'] / 1e6:.1f}M "
            f"| {inf['prefill_tokens_per_s']['gems']:.0f} / {inf['prefill_tokens_per_s']['aten']:.0f} "
            f"| {inf['decode_tokens_per_s']['gems']:.0f} / {inf['decode_tokens_per_s']['aten']:.0f} "
            f"| {tr['ms_per_step']['gems']:.2f} / {tr['ms_per_step']['aten']:.2f} "
            f"| {acc['gems_logits_max_error']:.3g} / {acc['aten_logits_max_error']:.3g} "
            f"| {acc['gems_grad_max_error']:.3g} / {acc['aten_grad_max_error']:.3g} "
            f"| {tr['noise_band_mean']:.3g} / {tr['gems_gap_mean']:.3g} | {'yes' if tr['agree'] else 'NO'} "
            f"| {100 * share:.1f}% |")
    for name, r in results.items():
        if "coverage_table" in r:
            lines += ["", f"### {name}: coverage of one training step and one decode step", "", "```",
                      r["coverage_table"], "```"]
    return "\n".join(lines) + "\n"


@dataclasses.dataclass
class SpeedConfig:
    decoder: DecoderConfig = dataclasses.field(default_factory=lambda: DecoderConfig(
        vocab_size=32000, hidden=2048, layers=8, heads=16, kv_heads=4, intermediate=5632, max_positions=2048))
    batch: int = 4
    seq_lens: tuple[int, ...] = (1024, 750)  # 4 x 750 = 3000 tokens: no multiple of a tile
    steps: int = 10  # timed steps per round
    rounds: int = 3
    lr: float = 1e-4
    device: str = "cuda"
    profile_top: int = 25  # kernels listed per side in the device-time breakdown (0: none)


def _speed_model(decoder: DecoderConfig, device: str) -> tuple[str, torch.nn.Module]:
    hf = transformers_models(decoder)
    name, build = ("llama", hf["llama"]) if "llama" in hf else ("tiny_llama", lambda: TinyLlama(decoder))
    torch.manual_seed(0)
    return name, build().to(device, torch.bfloat16)


# The speed harness's sides: ATen, gems.enable(), and gems.enable() with gems_aot.patch(model).
SPEED_SIDES = ("aten", "gems", "patched")


@contextlib.contextmanager
def _speed_side(side: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
    with gems_aot.use_gems(include=[] if side == "aten" else None):
        if side != "patched":
            yield
            return
        gems_aot.patch(model, optimizer)
        try:
            yield
        finally:
            gems_aot.unpatch(model, optimizer)


def kernel_times(fn: Callable[[], object]) -> dict[str, float]:
    """Device µs per CUDA kernel name over one call of fn (the profiler's CUDA events)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    times: dict[str, float] = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            times[e.name] = times.get(e.name, 0.0) + e.device_time
    return times


def speed(cfg: SpeedConfig, out: Optional[pathlib.Path]) -> dict:
    """ms per training step (forward, backward, AdamW) and per prefill of a realistic-size model,
    ATen and gems in interleaved rounds (the fastest round of each kept)."""
    name, model = _speed_model(cfg.decoder, cfg.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(0)
    results = {}
    for seq in cfg.seq_lens:
        x = torch.randint(cfg.decoder.vocab_size, (cfg.batch, seq + 1), generator=generator).to(cfg.device)
        ids, labels = x[:, :-1], x[:, 1:]

        def train_step():
            if isinstance(model, TinyLlama):
                loss = F.cross_entropy(logits_of(model, ids).float().flatten(0, 1), labels.flatten())
            else:  # transformers' own loss (labels shifted inside), as its Trainer computes it
                loss = model(input_ids=ids, labels=ids, use_cache=False).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def prefill():
            with torch.inference_mode():
                logits_of(model, ids)

        timings = {}
        for label, fn in (("train_step", train_step), ("prefill", prefill)):
            ms = {side: [] for side in SPEED_SIDES}
            for _ in range(cfg.rounds):
                for side in SPEED_SIDES:
                    with _speed_side(side, model, opt):
                        ms[side].append(_seconds(fn, cfg.steps, cfg.device) * 1e3)
            timings[label] = {"aten_ms": min(ms["aten"]), "gems_ms": min(ms["gems"]),
                              "speedup": min(ms["aten"]) / min(ms["gems"]), "patched_ms": min(ms["patched"]),
                              "patched_speedup": min(ms["aten"]) / min(ms["patched"])}
        if cfg.device == "cuda":
            peak = {}
            for side in SPEED_SIDES:
                with _speed_side(side, model, opt):
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    train_step()
                    torch.cuda.synchronize()
                    peak[side] = torch.cuda.max_memory_allocated() / 2**30
            timings["train_peak_gib"] = peak
        gems_aot.reset_fallback_counts()
        with gems_aot.use_gems():
            train_step()
        timings["fallbacks_per_step"] = {f"{op} ({reason})": n
                                         for (op, reason), n in gems_aot.fallback_counts().items()}
        if cfg.profile_top and cfg.device == "cuda":
            # Where the device time of one training step goes, per kernel, on each side.
            for side, include in (("aten", []), ("gems", None)):
                with gems_aot.use_gems(include=include):
                    times = kernel_times(train_step)
                top = sorted(times.items(), key=lambda kv: -kv[1])[:cfg.profile_top]
                timings[f"kernels_{side}_us"] = {"total": sum(times.values()), **dict(top)}
        results[f"{cfg.batch}x{seq}"] = timings
    patched = ", ".join(f"{k}: {v}" for k, v in gems_aot.patch(model, opt).items()) or "nothing recognised"
    gems_aot.unpatch(model, opt)
    device = torch.cuda.get_device_name() if cfg.device == "cuda" else cfg.device
    meta = {"device": device, "torch": torch.__version__, "gems_aot": gems_aot.__version__, "model": name, "decoder": dataclasses.asdict(cfg.decoder), "batch": cfg.batch,
            "parameters": sum(p.numel() for p in model.parameters())}
    lines = [f"Device: {meta['device']}, torch {meta['torch']}; {name}, {meta['parameters'] / 1e6:.0f}M parameters, "
             f"hidden {cfg.decoder.hidden}, {cfg.decoder.layers} layers, vocabulary {cfg.decoder.vocab_size}, bf16, AdamW", "",
             "| tokens | train step ms gems / ATen | speed-up | prefill ms gems / ATen | speed-up | fallbacks per gems step |",
             "|---|---|---|---|---|---|"]
    for tokens, t in results.items():
        tr, pf = t["train_step"], t["prefill"]
        fb = ", ".join(f"{k}: {v}" for k, v in t["fallbacks_per_step"].items()) or "none"
        lines.append(f"| {tokens} | {tr['gems_ms']:.2f} / {tr['aten_ms']:.2f} | {tr['speedup']:.3f}x "
                     f"| {pf['gems_ms']:.2f} / {pf['aten_ms']:.2f} | {pf['speedup']:.3f}x | {fb} |")
    lines += ["", f"With gems_aot.patch(model, optimizer) as well ({patched}):", "",
              "| tokens | train step ms | speed-up | prefill ms | speed-up | train peak GiB ATen / gems / patched |",
              "|---|---|---|---|---|---|"]
    for tokens, t in results.items():
        tr, pf, peak = t["train_step"], t["prefill"], t.get("train_peak_gib", {})
        mem = " / ".join(f"{peak[s]:.2f}" for s in SPEED_SIDES) if peak else "-"
        lines.append(f"| {tokens} | {tr['patched_ms']:.2f} | {tr['patched_speedup']:.3f}x | {pf['patched_ms']:.2f} "
                     f"| {pf['patched_speedup']:.3f}x | {mem} |")
    for tokens, t in results.items():
        for side in ("aten", "gems"):
            kernels = t.get(f"kernels_{side}_us")
            if kernels:
                lines += ["", f"{tokens}, one training step on {side}: {kernels['total'] / 1e3:.2f} ms of kernels", "",
                          "| kernel | µs |", "|---|---|"]
                lines += [f"| {name[:110]} | {us:.0f} |" for name, us in kernels.items() if name != "total"]
    text = "\n".join(lines) + "\n"
    print(text)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "speed.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
        (out / "speed.md").write_text(text)
    return {"meta": meta, "results": results}


def run(cfg: HarnessConfig, out: Optional[pathlib.Path]) -> dict:
    """Runs every model of cfg that can be built here; writes the files when out is given."""
    unknown = [m for m in cfg.models if m not in MODELS]
    if unknown:
        raise ValueError(f"gems_aot models: unknown models {unknown}; known: {', '.join(MODELS)}")
    available = builders(cfg.decoder)
    missing = [m for m in cfg.models if m not in available]
    task = SyntheticTask(cfg.decoder.vocab_size, cfg.seq_len, num_sequences=4096, seed=0)
    results = {}
    for name in cfg.models:
        if name not in available:
            continue
        print(f"[gems-aot models] {name} ...", flush=True)
        try:
            results[name] = run_model(name, available[name], cfg, task)
        except Exception as e:  # one model's failure is reported, and the others still run
            traceback.print_exc()
            results[name] = {"error": f"{type(e).__name__}: {e}"}
    device = torch.cuda.get_device_name() if cfg.device == "cuda" else cfg.device
    meta = {"device": device, "torch": torch.__version__, "gems_aot": gems_aot.__version__,
            "config": dataclasses.asdict(cfg), "entropy_floor": task.entropy_floor(), "not_available": missing}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "models.json").write_text(json.dumps({"meta": meta, "models": results}, indent=1))
        (out / "models.md").write_text(markdown(results, meta))
        if _plots.available():
            for name, r in results.items():
                if "training" in r:
                    _plot_losses(out / f"loss_{name}.png", name, r["training"], task.entropy_floor())
    print(markdown(results, meta))
    if missing:
        print(f"not run (transformers not installed?): {', '.join(missing)}")
    return {"meta": meta, "models": results}
