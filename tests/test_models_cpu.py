"""CPU tests of gems_aot._models: TinyLlama (shapes, causality, KV cache, GQA, greedy decoding, equality
with Hugging Face's Llama), the optional transformers builders, and SyntheticTask (data, batching,
entropy floor, a short training run)."""

import math
import sys

import pytest
import torch
import torch.nn.functional as F

from gems_aot._models import (DecoderConfig, SyntheticTask, TinyLlama, forward_with_cache, generate_greedy, logits_of,
                              transformers_models)

VOCAB = 128


def small_config(**overrides) -> DecoderConfig:
    fields = dict(vocab_size=VOCAB, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=172, max_positions=64)
    fields.update(overrides)
    return DecoderConfig(**fields)


def tiny_llama(config: DecoderConfig, dtype: torch.dtype = torch.float32, seed: int = 0) -> TinyLlama:
    torch.manual_seed(seed)
    return TinyLlama(config).to(dtype).eval()


def token_ids(batch: int, seq: int, vocab: int = VOCAB, seed: int = 1) -> torch.Tensor:
    return torch.randint(vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))


def assert_cached_decode_matches_full_forward(model: torch.nn.Module, ids: torch.Tensor, prefill: int,
                                              chunks: list[int]) -> None:
    """Prefill ids[:, :prefill], then feed the rest in chunks of the given sizes through the cache; every
    chunk's logits must equal the full forward's logits at the same positions."""
    assert prefill + sum(chunks) == ids.shape[1]
    with torch.no_grad():
        full = logits_of(model, ids)
        logits, cache = forward_with_cache(model, ids[:, :prefill], None, 0)
        torch.testing.assert_close(logits, full[:, :prefill], rtol=0, atol=1e-5)
        position = prefill
        for size in chunks:
            logits, cache = forward_with_cache(model, ids[:, position:position + size], cache, position)
            torch.testing.assert_close(logits, full[:, position:position + size], rtol=0, atol=1e-5)
            position += size


def argmax_by_full_forwards(model: torch.nn.Module, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
    ids = prompt
    with torch.no_grad():
        for _ in range(new_tokens):
            ids = torch.cat((ids, logits_of(model, ids)[:, -1].argmax(-1, keepdim=True)), dim=1)
    return ids[:, prompt.shape[1]:]


# -- TinyLlama -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_logits_and_cache_shapes_and_dtype(dtype):
    config = small_config()
    model = tiny_llama(config, dtype)
    with torch.no_grad():
        logits, cache = model(token_ids(2, 10))
    assert logits.shape == (2, 10, VOCAB)
    assert logits.dtype == dtype
    assert torch.isfinite(logits).all()
    assert len(cache) == config.layers
    for k, v in cache:
        assert k.shape == v.shape == (2, config.kv_heads, 10, config.head_dim)
        assert k.dtype == v.dtype == dtype


def test_default_config_runs():
    config = DecoderConfig()
    assert (config.vocab_size, config.hidden, config.layers, config.heads, config.kv_heads, config.intermediate,
            config.max_positions) == (2048, 256, 4, 8, 4, 688, 512)
    with torch.no_grad():
        logits, _ = tiny_llama(config)(token_ids(1, 16, vocab=2048))
    assert logits.shape == (1, 16, 2048)


def test_weights_follow_the_torch_seed():
    first, again, other = tiny_llama(small_config(), seed=0), tiny_llama(small_config(), seed=0), tiny_llama(
        small_config(), seed=1)
    for name, weight in first.state_dict().items():
        assert torch.equal(weight, again.state_dict()[name]), name
    assert not torch.equal(first.lm_head.weight, other.lm_head.weight)
    assert torch.equal(first.norm.weight, torch.ones(64))
    # std 0.02 over 128 * 64 normal draws: the sample std is within a few percent of it.
    assert abs(first.lm_head.weight.std().item() - 0.02) < 0.001


@pytest.mark.parametrize("kv_heads", [4, 2, 1], ids=["mha", "gqa2", "mqa"])
def test_causality(kv_heads):
    model = tiny_llama(small_config(kv_heads=kv_heads))
    ids = token_ids(2, 12)
    changed_at = 5
    changed = ids.clone()
    changed[:, changed_at] = (changed[:, changed_at] + 1) % VOCAB
    with torch.no_grad():
        before, after = logits_of(model, ids), logits_of(model, changed)
    torch.testing.assert_close(after[:, :changed_at], before[:, :changed_at], rtol=0, atol=0)
    # Logits are O(0.1-0.5) with std-0.02 weights; another token moves them by far more than 1e-3.
    assert ((after[:, changed_at] - before[:, changed_at]).abs().amax(-1) > 1e-3).all()
    assert ((after[:, -1] - before[:, -1]).abs().amax(-1) > 1e-3).all()


@pytest.mark.parametrize("kv_heads", [4, 2, 1], ids=["mha", "gqa2", "mqa"])
def test_single_token_decode_matches_full_forward(kv_heads):
    assert_cached_decode_matches_full_forward(tiny_llama(small_config(kv_heads=kv_heads)), token_ids(2, 12), 6,
                                              [1] * 6)


@pytest.mark.parametrize("kv_heads", [4, 2], ids=["mha", "gqa2"])
def test_chunked_decode_matches_full_forward(kv_heads):
    # A 3-token chunk after the prefill needs the explicit bottom-right-aligned causal mask.
    assert_cached_decode_matches_full_forward(tiny_llama(small_config(kv_heads=kv_heads)), token_ids(2, 12), 6,
                                              [3, 1, 2])


def test_decode_leaves_the_passed_cache_alone():
    model = tiny_llama(small_config())
    ids = token_ids(2, 8)
    with torch.no_grad():
        _, cache = model(ids[:, :6])
        kept = [(k.clone(), v.clone()) for k, v in cache]
        _, longer = model(ids[:, 6:], cache, start_pos=6)
    for (k, v), (k_kept, v_kept) in zip(cache, kept, strict=True):
        assert torch.equal(k, k_kept) and torch.equal(v, v_kept)
    assert longer[0][0].shape[2] == 8


def test_bad_positions_raise():
    model = tiny_llama(small_config(max_positions=16))
    ids = token_ids(1, 8)
    with torch.no_grad():
        _, cache = model(ids)
        with pytest.raises(ValueError, match="start_pos"):
            model(ids[:, :1], cache, start_pos=7)
        with pytest.raises(ValueError, match="start_pos"):
            model(ids[:, :1], None, start_pos=8)
        with pytest.raises(ValueError, match="max_positions"):
            model(ids[:, :1].repeat(1, 9), cache, start_pos=8)


def test_heads_must_divide():
    with pytest.raises(ValueError, match="kv_heads"):
        TinyLlama(small_config(heads=4, kv_heads=3))


def test_gqa_equals_mha_with_repeated_kv_weights():
    """Query head h uses kv head h // (heads / kv_heads): a GQA model equals an MHA model whose k/v
    projections repeat each kv head's rows for its group of query heads."""
    gqa_config, mha_config = small_config(kv_heads=2), small_config(kv_heads=4)
    gqa = tiny_llama(gqa_config)
    repeats = gqa_config.heads // gqa_config.kv_heads
    state = {}
    for name, weight in gqa.state_dict().items():
        if name.endswith(("k_proj.weight", "v_proj.weight")):
            weight = weight.view(gqa_config.kv_heads, gqa_config.head_dim, -1).repeat_interleave(repeats, dim=0)
            weight = weight.reshape(mha_config.heads * mha_config.head_dim, -1)
        state[name] = weight
    mha = TinyLlama(mha_config).eval()
    mha.load_state_dict(state)
    ids = token_ids(2, 10)
    with torch.no_grad():
        torch.testing.assert_close(logits_of(mha, ids), logits_of(gqa, ids), rtol=0, atol=1e-6)


def test_generate_greedy_is_the_argmax_continuation():
    model = tiny_llama(small_config())
    prompt = token_ids(3, 5)
    generated = generate_greedy(model, prompt, 7)
    assert generated.shape == (3, 7) and generated.dtype == torch.int64
    assert torch.equal(generated, argmax_by_full_forwards(model, prompt, 7))
    assert generate_greedy(model, prompt, 0).shape == (3, 0)


# -- transformers builders -----------------------------------------------------------------------


def test_transformers_models_is_empty_without_transformers(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now raises ImportError
    assert transformers_models(small_config()) == {}


@pytest.mark.parametrize("name", ["llama", "qwen2", "gpt2"])
def test_transformers_builder(name):
    pytest.importorskip("transformers")
    config = small_config()
    builders = transformers_models(config)
    assert set(builders) == {"llama", "qwen2", "gpt2"}
    torch.manual_seed(0)
    model = builders[name]()
    torch.manual_seed(0)
    again = builders[name]()
    for key, weight in model.state_dict().items():
        assert torch.equal(weight, again.state_dict()[key]), key
    assert model.config._attn_implementation == "sdpa"
    ids = token_ids(2, 12)
    with torch.no_grad():
        logits = logits_of(model, ids)
    assert logits.shape == (2, 12, VOCAB) and logits.dtype == torch.float32
    assert_cached_decode_matches_full_forward(model, ids, 6, [1, 1, 3, 1])
    prompt = ids[:, :5]
    assert torch.equal(generate_greedy(model, prompt, 4), argmax_by_full_forwards(model, prompt, 4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_tiny_llama_equals_transformers_llama_with_the_same_weights(dtype):
    pytest.importorskip("transformers")
    config = small_config()
    tiny = tiny_llama(config, dtype)
    # Built under the default dtype, as from_pretrained(dtype=...) does: .to(bfloat16) would also round
    # the rotary inv_freq buffer, which TinyLlama (like a loaded checkpoint) keeps in float32.
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        llama = transformers_models(config)["llama"]()
    finally:
        torch.set_default_dtype(default_dtype)
    # TinyLlama's parameter names are LlamaForCausalLM's without the "model." prefix of the decoder.
    llama.load_state_dict({(name if name.startswith("lm_head.") else "model." + name): weight
                           for name, weight in tiny.state_dict().items()})
    ids = token_ids(2, 12)
    with torch.no_grad():
        torch.testing.assert_close(logits_of(tiny, ids), logits_of(llama, ids), rtol=0, atol=0)


# -- SyntheticTask -------------------------------------------------------------------------------


def test_task_data_depends_only_on_seed():
    task, same, other = SyntheticTask(64, 16, 100, seed=0), SyntheticTask(64, 16, 100, seed=0), SyntheticTask(
        64, 16, 100, seed=1)
    assert task.sequences.shape == (100, 17) and task.sequences.dtype == torch.int64
    assert torch.equal(task.sequences, same.sequences) and torch.equal(task.permutation, same.permutation)
    assert not torch.equal(task.sequences, other.sequences)
    assert torch.equal(task.permutation.sort().values, torch.arange(64))


def test_batches_are_shifted_rows_of_the_data():
    task = SyntheticTask(64, 16, 40, seed=0)
    rows = {tuple(row) for row in task.sequences.tolist()}
    batches = list(task.batches(batch_size=16, steps=7, order_seed=0))  # 112 rows: wraps over three shuffles
    assert len(batches) == 7
    for inputs, targets in batches:
        assert inputs.shape == targets.shape == (16, 16)
        assert inputs.dtype == targets.dtype == torch.int64
        assert torch.equal(inputs[:, 1:], targets[:, :-1])
        for row in torch.cat((inputs, targets[:, -1:]), dim=1).tolist():
            assert tuple(row) in rows


def test_order_seed_changes_only_the_order():
    task = SyntheticTask(64, 16, 64, seed=0)
    data = task.sequences.clone()

    def epochs(order_seed, steps):
        return [tuple(row) for inputs, targets in task.batches(16, steps, order_seed)
                for row in torch.cat((inputs, targets[:, -1:]), dim=1).tolist()]

    everything = sorted(tuple(row) for row in data.tolist())
    first, second = epochs(0, 4), epochs(1, 4)  # exactly one epoch each
    assert sorted(first) == sorted(second) == everything
    assert first != second
    assert epochs(0, 4) == first
    assert sorted(epochs(1, 8)) == sorted(everything * 2)
    assert torch.equal(task.sequences, data)


@pytest.mark.parametrize("vocab", [64, 2048])
def test_entropy_floor_is_the_true_distributions_cross_entropy(vocab):
    task = SyntheticTask(vocab, seq_len=128, num_sequences=2048, seed=3)
    other = (1 - SyntheticTask.FOLLOW) / vocab
    likely = SyntheticTask.FOLLOW + other
    true_log_probs = torch.full((vocab, vocab), math.log(other), dtype=torch.float64)
    true_log_probs[torch.arange(vocab), task.permutation] = math.log(likely)
    torch.testing.assert_close(true_log_probs.logsumexp(-1), torch.zeros(vocab, dtype=torch.float64))
    true_entropy = -(true_log_probs.exp() * true_log_probs).sum(-1).mean().item()
    assert math.isclose(task.entropy_floor(), true_entropy, rel_tol=1e-12)
    previous, following = task.sequences[:, :-1].reshape(-1), task.sequences[:, 1:].reshape(-1)
    empirical = -true_log_probs[previous, following].mean().item()
    # Each transition's loss is -log(likely) with probability `likely` and -log(other) otherwise,
    # independently of the rest, so the mean of n of them has this standard error; 5 of them bound a
    # chance failure at ~6e-7 (and the seed fixes the sample anyway).
    n = previous.numel()
    standard_error = math.sqrt(likely * (1 - likely) / n) * (math.log(likely) - math.log(other))
    assert abs(empirical - task.entropy_floor()) < 5 * standard_error
    follows = (following == task.permutation[previous]).double().mean().item()
    assert abs(follows - likely) < 5 * math.sqrt(likely * (1 - likely) / n)
    assert 0 < task.entropy_floor() < math.log(vocab)


def train_losses(seed: int) -> tuple[list[float], float]:
    vocab = 64
    config = DecoderConfig(vocab_size=vocab, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=172,
                           max_positions=32)
    torch.manual_seed(seed)
    model = TinyLlama(config)
    task = SyntheticTask(vocab, seq_len=32, num_sequences=512, seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for inputs, targets in task.batches(batch_size=16, steps=60, order_seed=seed):
        logits, _ = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, task.entropy_floor()


def test_short_training_run_learns_and_is_reproducible():
    losses, floor = train_losses(seed=0)
    assert losses == train_losses(seed=0)[0]
    first, last10 = losses[0], sum(losses[-10:]) / 10
    # Near-uniform logits at init: ln(64) = 4.16.
    assert abs(first - math.log(64)) < 0.1
    # Observed (seeds 0-3): first 4.16-4.18, last-10 mean 0.78-0.80 against a floor of 0.73.
    assert last10 < first - 2.5
    assert last10 < floor + 0.25
