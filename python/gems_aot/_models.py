"""Models and data for the model-level benchmark and accuracy harness.

    model = TinyLlama(DecoderConfig())               # random weights; seed torch first
    logits, cache = model(prompt_ids)                # prefill
    logits, cache = model(next_ids, cache, start_pos=prompt_ids.shape[1])   # decode
    ids = generate_greedy(model, prompt_ids, new_tokens=16)   # also for the Hugging Face models
    builders = transformers_models(DecoderConfig())  # {"llama", "qwen2", "gpt2"} or {} without transformers
    task = SyntheticTask(vocab_size=2048, seq_len=128, num_sequences=4096)

TinyLlama is a Llama-style decoder written with plain torch ops, the way real models are, so an op
library that overrides aten ops sees realistic traffic; its parameter names follow Hugging Face's
LlamaForCausalLM (without the ``model.`` prefix). SyntheticTask is a fixed, learnable next-token task
with a known optimal loss, for training runs. Pure torch; nothing is downloaded.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# A layer's (key, value), each (batch, kv_heads, positions so far, head_dim); a cache has one per layer.
LayerKV = tuple[torch.Tensor, torch.Tensor]
KVCache = list[LayerKV]


@dataclass
class DecoderConfig:
    """Sizes of a TinyLlama and of the transformers_models: kv_heads < heads is grouped-query attention,
    intermediate the SwiGLU width."""

    vocab_size: int = 2048
    hidden: int = 256
    layers: int = 4
    heads: int = 8
    kv_heads: int = 4
    intermediate: int = 688
    max_positions: int = 512
    rms_eps: float = 1e-6
    rope_theta: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


class RMSNorm(nn.Module):
    def __init__(self, hidden: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In float32 whatever the model dtype, as Hugging Face's LlamaRMSNorm does.
        x32 = x.float()
        variance = x32.pow(2).mean(-1, keepdim=True)
        x32 = x32 * torch.rsqrt(variance + self.eps)
        return self.weight * x32.to(x.dtype)


def rotary_cos_sin(config: DecoderConfig, positions: torch.Tensor,
                   dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, (len(positions), head_dim), computed in float32 then cast."""
    exponents = torch.arange(0, config.head_dim, 2, device=positions.device, dtype=torch.float32) / config.head_dim
    inv_freq = 1.0 / (config.rope_theta**exponents)
    angles = positions.float()[:, None] * inv_freq[None, :]
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def repeat_kv(x: torch.Tensor, repeats: int) -> torch.Tensor:
    """(batch, kv_heads, seq, head_dim) -> (batch, kv_heads * repeats, seq, head_dim): query head h reads kv head
    h // repeats."""
    if repeats == 1:
        return x
    batch, kv_heads, seq, head_dim = x.shape
    expanded = x[:, :, None].expand(batch, kv_heads, repeats, seq, head_dim)
    return expanded.reshape(batch, kv_heads * repeats, seq, head_dim)


class Attention(nn.Module):
    def __init__(self, config: DecoderConfig):
        super().__init__()
        if config.hidden % config.heads or config.heads % config.kv_heads:
            raise ValueError(f"hidden ({config.hidden}) must be a multiple of heads ({config.heads}), "
                             f"and heads a multiple of kv_heads ({config.kv_heads})")
        self.config = config
        head_dim = config.head_dim
        self.q_proj = nn.Linear(config.hidden, config.heads * head_dim, bias=False)
        self.k_proj = nn.Linear(config.hidden, config.kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(config.hidden, config.kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(config.heads * head_dim, config.hidden, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                past: LayerKV | None) -> tuple[torch.Tensor, LayerKV]:
        config = self.config
        batch, seq, _ = x.shape
        q = self.q_proj(x).view(batch, seq, config.heads, config.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, seq, config.kv_heads, config.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, seq, config.kv_heads, config.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if past is not None:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        repeats = config.heads // config.kv_heads
        keys, values = repeat_kv(k, repeats), repeat_kv(v, repeats)
        if past is None:
            out = F.scaled_dot_product_attention(q, keys, values, is_causal=True)
        elif seq == 1:
            # One new query sees every cached position: nothing to mask.
            out = F.scaled_dot_product_attention(q, keys, values)
        else:
            # is_causal aligns the mask top-left, which is wrong when keys outnumber queries:
            # new token i (at position start + i) sees keys 0 .. start + i.
            start = past[0].shape[2]
            allowed = torch.ones(seq, start + seq, dtype=torch.bool, device=x.device).tril(diagonal=start)
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed)
        out = out.transpose(1, 2).reshape(batch, seq, config.heads * config.head_dim)
        return self.o_proj(out), (k, v)


class MLP(nn.Module):
    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden, config.intermediate, bias=False)
        self.up_proj = nn.Linear(config.hidden, config.intermediate, bias=False)
        self.down_proj = nn.Linear(config.intermediate, config.hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden, config.rms_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden, config.rms_eps)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                past: LayerKV | None) -> tuple[torch.Tensor, LayerKV]:
        attended, present = self.self_attn(self.input_layernorm(x), cos, sin, past)
        x = x + attended
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, present


class TinyLlama(nn.Module):
    """Llama-style decoder: embedding, RMSNorm, rotary GQA attention through SDPA, SwiGLU MLP, untied lm_head.

    Weights are drawn from torch's global generator (normal, std 0.02; norms ones): seed torch first.
    """

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.layers))
        self.norm = RMSNorm(config.hidden, config.rms_eps)
        self.lm_head = nn.Linear(config.hidden, config.vocab_size, bias=False)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)

    def forward(self, input_ids: torch.Tensor, cache: KVCache | None = None,
                start_pos: int = 0) -> tuple[torch.Tensor, KVCache]:
        """Logits (batch, seq, vocab) in the model's dtype for input_ids (batch, seq), and the cache.

        Prefill: cache None, start_pos 0. Decode (any number of new tokens): the cache returned by the
        previous call and start_pos = the number of positions it holds. The returned cache holds
        every position so far; the one passed in is not modified.
        """
        seq = input_ids.shape[1]
        cached = 0 if cache is None else cache[0][0].shape[2]
        if start_pos != cached:
            raise ValueError(f"start_pos is {start_pos} but the cache holds {cached} positions")
        if start_pos + seq > self.config.max_positions:
            raise ValueError(f"{start_pos + seq} positions exceed max_positions ({self.config.max_positions})")
        x = self.embed_tokens(input_ids)
        positions = torch.arange(start_pos, start_pos + seq, device=input_ids.device)
        cos, sin = rotary_cos_sin(self.config, positions, x.dtype)
        new_cache = []
        for index, layer in enumerate(self.layers):
            x, present = layer(x, cos, sin, None if cache is None else cache[index])
            new_cache.append(present)
        return self.lm_head(self.norm(x)), new_cache


def _hf_cache_name(model: nn.Module) -> str:
    # Newer transformers (5.24 here) call the argument and output field `cache` and warn on `past_key_values`.
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def logits_of(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """Logits (batch, seq, vocab) of one full forward, for a TinyLlama or a Hugging Face causal LM."""
    if isinstance(model, TinyLlama):
        return model(input_ids)[0]
    return model(input_ids=input_ids, use_cache=False).logits


def forward_with_cache(model: nn.Module, input_ids: torch.Tensor, cache: Any,
                       start_pos: int) -> tuple[torch.Tensor, Any]:
    """One cached forward of a TinyLlama or a Hugging Face causal LM: (logits, cache to pass next time).

    cache None and start_pos 0 for prefill; then the returned cache and the number of positions it
    holds. A Hugging Face model tracks positions in its own cache object (ignoring start_pos) and
    updates that object in place.
    """
    if isinstance(model, TinyLlama):
        return model(input_ids, cache, start_pos)
    name = _hf_cache_name(model)
    out = model(input_ids=input_ids, use_cache=True, **{name: cache})
    return out.logits, getattr(out, name)


@torch.no_grad()
def generate_greedy(model: nn.Module, prompt_ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """The `new_tokens` argmax continuation (batch, new_tokens) of prompt_ids (batch, prompt).

    One prefill gives the first token, then one cached single-token decode step per further token.
    Works for a TinyLlama and for a Hugging Face causal LM.
    """
    if new_tokens == 0:
        return prompt_ids.new_empty(prompt_ids.shape[0], 0)
    logits, cache = forward_with_cache(model, prompt_ids, None, 0)
    generated = [logits[:, -1].argmax(-1)]
    position = prompt_ids.shape[1]
    for _ in range(new_tokens - 1):
        logits, cache = forward_with_cache(model, generated[-1][:, None], cache, position)
        generated.append(logits[:, -1].argmax(-1))
        position += 1
    return torch.stack(generated, dim=1)


def transformers_models(config: DecoderConfig) -> dict[str, Callable[[], nn.Module]]:
    """Zero-argument builders of Hugging Face "llama", "qwen2" and "gpt2" causal LMs sized like config.

    Random weights from torch's global generator, SDPA attention, no dropout, KV cache on. gpt2 has
    no grouped-query attention and uses its own 4 * hidden MLP width with tied embeddings.
    Empty when transformers cannot be imported.
    """
    try:
        from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config,
                                  Qwen2ForCausalLM)
    except ImportError:
        return {}

    shared = dict(vocab_size=config.vocab_size, hidden_size=config.hidden, intermediate_size=config.intermediate,
                  num_hidden_layers=config.layers, num_attention_heads=config.heads,
                  num_key_value_heads=config.kv_heads, max_position_embeddings=config.max_positions,
                  rms_norm_eps=config.rms_eps, rope_theta=config.rope_theta, attention_dropout=0.0,
                  tie_word_embeddings=False, use_cache=True, attn_implementation="sdpa")

    def llama() -> nn.Module:
        return LlamaForCausalLM(LlamaConfig(**shared))

    def qwen2() -> nn.Module:
        return Qwen2ForCausalLM(Qwen2Config(**shared, use_sliding_window=False))

    def gpt2() -> nn.Module:
        # Token ids 50256 (GPT-2's bos/eos default) lie outside a small vocabulary.
        return GPT2LMHeadModel(GPT2Config(
            vocab_size=config.vocab_size, n_positions=config.max_positions, n_embd=config.hidden,
            n_layer=config.layers, n_head=config.heads, n_inner=4 * config.hidden, resid_pdrop=0.0,
            embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0, bos_token_id=None, eos_token_id=None,
            use_cache=True, attn_implementation="sdpa"))

    return {"llama": llama, "qwen2": qwen2, "gpt2": gpt2}


class SyntheticTask:
    """A fixed next-token task: each sequence starts at a random token and then, at every step, moves to
    perm[previous] with probability FOLLOW (a fixed random permutation of the vocabulary) or to a
    uniformly random token otherwise. A model must learn perm; the best achievable loss is
    entropy_floor(), well above 0.

    All sequences are drawn once, on the CPU, from `seed`: sequences is (num_sequences, seq_len + 1)
    int64 and permutation is (vocab_size,) int64.
    """

    FOLLOW = 0.9

    def __init__(self, vocab_size: int, seq_len: int, num_sequences: int, seed: int = 0):
        self.vocab_size = vocab_size
        self.seq_len = seq_len
        generator = torch.Generator().manual_seed(seed)
        self.permutation = torch.randperm(vocab_size, generator=generator)
        columns = [torch.randint(vocab_size, (num_sequences,), generator=generator)]
        for _ in range(seq_len):
            follows = torch.rand(num_sequences, generator=generator) < self.FOLLOW
            random_tokens = torch.randint(vocab_size, (num_sequences,), generator=generator)
            columns.append(torch.where(follows, self.permutation[columns[-1]], random_tokens))
        self.sequences = torch.stack(columns, dim=1)

    @property
    def num_sequences(self) -> int:
        return self.sequences.shape[0]

    def batches(self, batch_size: int, steps: int, order_seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """`steps` (inputs, targets) pairs, each (batch_size, seq_len) int64, targets = inputs shifted by one.

        Sequences are taken in the order of successive shuffles of all of them (a new shuffle once
        one is used up), drawn from order_seed: it changes which sequences share a batch and the
        order, never the data.
        """
        generator = torch.Generator().manual_seed(order_seed)
        pending = torch.empty(0, dtype=torch.int64)
        for _ in range(steps):
            while len(pending) < batch_size:
                pending = torch.cat((pending, torch.randperm(self.num_sequences, generator=generator)))
            picked, pending = pending[:batch_size], pending[batch_size:]
            rows = self.sequences[picked]
            yield rows[:, :-1].contiguous(), rows[:, 1:].contiguous()

    def entropy_floor(self) -> float:
        """Mean cross-entropy (nats) of the true next-token distribution: the lowest any model can reach.

        The next token is perm[previous] with probability FOLLOW + (1 - FOLLOW) / V and each of the
        other V - 1 tokens with probability (1 - FOLLOW) / V, whatever came before.
        """
        vocab = self.vocab_size
        other = (1.0 - self.FOLLOW) / vocab
        likely = self.FOLLOW + other
        return -(likely * math.log(likely) + (vocab - 1) * other * math.log(other))
