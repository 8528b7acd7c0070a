"""The GEMM shape set: what the offline tuner (build_tools/tune_gemm.py) tunes over and
`python -m gems_aot bench --family gemm` measures.

The linear layers of 1B-70B Llama / Qwen / Mistral style models, each as the three matmuls of
training: the forward x @ W^T ("nt": A row-major, B col-major), the input gradient dy @ W ("nn")
and the weight gradient dy^T @ x ("tn", the token count as the reduction dimension); decode
forwards (M = 1..128); squares. Every aligned training case has an uneven neighbour (a token
count or a size that is no multiple of 16 or of a tile) so that cliffs show.

The "batched" group is bmm's: attention's batched matmuls (batch = batch x heads) at sequence
lengths 1024, 128 and the uneven 1000, and grouped (expert-style) linear layers. The tuner does
not tune it (TUNED_GROUPS): the batched kernels take the mm table's configuration for their
(M, N, K) for now; `python -m gems_aot bench --family gemm` measures it against torch.bmm.
"""

from __future__ import annotations

import dataclasses

# name: (hidden, intermediate, key/value width, vocabulary or 0 to leave the LM head out)
MODELS = {
    "llama-2048": (2048, 5632, 512, 32000),  # the harness' realistic Llama (hidden 2048, GQA 16/4)
    "llama3-8b": (4096, 14336, 1024, 0),  # Mistral-7B has the same linear layers
    "qwen2.5-7b": (3584, 18944, 512, 0),
    "llama3-70b": (8192, 28672, 1024, 0),
}
TRAIN_TOKENS = (4096,)
UNEVEN_TOKENS = {4096: 3000}  # aligned token count -> its uneven neighbour
DECODE_TOKENS = (1, 16, 64, 128)
SQUARES = (256, 512, 1024, 2048, 4096, 8192)
UNEVEN_SQUARES = {4096: 4095}
# Attention as bmm: (batch x heads, sequence length, head dim), and the uneven neighbour of a
# sequence length.
ATTENTION = ((32, 1024, 128), (64, 1024, 64), (64, 128, 128))
UNEVEN_SEQUENCE = {1024: 1000}
# Grouped linear layers (a batch of experts' weights): (groups, tokens per group, out, in).
GROUPED_LINEAR = ((8, 2048, 1024, 1024), (8, 512, 4096, 1024))
GROUPS = ("train", "decode", "square", "batched")
TUNED_GROUPS = ("train", "decode", "square")


@dataclasses.dataclass(frozen=True)
class Case:
    group: str  # train, decode, square, batched
    name: str  # e.g. "llama3-8b down fwd"
    m: int
    n: int
    k: int
    layout: str  # "nt": A row-major, B col-major; ...
    neighbour: tuple | None = None  # (m, n, k) of the aligned case this uneven one is compared with
    batch: int | None = None  # a bmm of this many matrices; None: an mm

    @property
    def flop(self) -> float:
        return 2.0 * (self.batch or 1) * self.m * self.n * self.k


def linear_layers(model: str) -> list:
    hidden, inter, kv, vocab = MODELS[model]
    layers = [("q/o", hidden, hidden), ("k/v", kv, hidden), ("gate/up", inter, hidden), ("down", hidden, inter)]
    if vocab:
        layers.append(("lm_head", vocab, hidden))
    return layers  # (name, out features N, in features K)


def training_cases(tokens: int, model: str, neighbour_tokens: int | None = None) -> list:
    """Forward, input gradient and weight gradient of every linear layer at `tokens` tokens."""
    out = []
    for layer, n, k in linear_layers(model):
        for kind, (m_, n_, k_), layout, nb in (
            ("fwd", (tokens, n, k), "nt", (neighbour_tokens, n, k)),
            ("dgrad", (tokens, k, n), "nn", (neighbour_tokens, k, n)),
            ("wgrad", (n, k, tokens), "tn", (n, k, neighbour_tokens)),
        ):
            out.append(Case("train", f"{model} {layer} {kind}", m_, n_, k_, layout,
                            nb if neighbour_tokens else None))
    return out


def attention_cases(batch: int, seq: int, head_dim: int, neighbour_seq: int | None = None) -> list:
    """Scores Q @ K^T (K as stored, transposed), the output P @ V, and the gradient of V, P^T @ dO."""
    out = []
    for kind, (m, n, k), layout in (("scores", (seq, seq, head_dim), "nt"), ("output", (seq, head_dim, seq), "nn"),
                                    ("grad v", (seq, head_dim, seq), "tn")):
        nb = None
        if neighbour_seq:
            nb = tuple(neighbour_seq if d == seq else d for d in (m, n, k))
        out.append(Case("batched", f"attention {batch}x{seq}x{head_dim} {kind}", m, n, k, layout, nb, batch))
    return out


def cases(groups=GROUPS) -> list:
    out = []
    if "train" in groups:
        for model in MODELS:
            for tokens in TRAIN_TOKENS:
                out += training_cases(tokens, model)
                out += training_cases(UNEVEN_TOKENS[tokens], model, neighbour_tokens=tokens)
    if "decode" in groups:
        for model in MODELS:
            for tokens in DECODE_TOKENS:
                out += [Case("decode", f"{model} {layer} decode", tokens, n, k, "nt")
                        for layer, n, k in linear_layers(model)]
    if "square" in groups:
        for s in SQUARES:
            out.append(Case("square", f"square {s}", s, s, s, "nn"))
            if s in UNEVEN_SQUARES:
                u = UNEVEN_SQUARES[s]
                out.append(Case("square", f"square {u}", u, u, u, "nn", (s, s, s)))
    if "batched" in groups:
        for batch, seq, head_dim in ATTENTION:
            out += attention_cases(batch, seq, head_dim)
            if seq in UNEVEN_SEQUENCE:
                out += attention_cases(batch, UNEVEN_SEQUENCE[seq], head_dim, neighbour_seq=seq)
        for batch, tokens, n, k in GROUPED_LINEAR:
            out.append(Case("batched", f"grouped linear {batch}x{tokens} fwd", tokens, n, k, "nt", batch=batch))
            out.append(Case("batched", f"grouped linear {batch}x{tokens} dgrad", tokens, k, n, "nn", batch=batch))
    return out


def operands(case: Case, dtype, device="cuda", generator=None):
    """A [m, k] and B [k, n] in the case's layout (a col-major operand is the transpose of a
    row-major tensor, as in the model: W^T, dy^T, K^T); [batch, m, k] and [batch, k, n] for a bmm."""
    import torch

    lead = () if case.batch is None else (case.batch,)

    def make(rows, cols, row_major):
        if row_major:
            return torch.randn(*lead, rows, cols, device=device, dtype=dtype, generator=generator)
        return torch.randn(*lead, cols, rows, device=device, dtype=dtype, generator=generator).transpose(-1, -2)

    return make(case.m, case.k, case.layout[0] == "n"), make(case.k, case.n, case.layout[1] == "n")
