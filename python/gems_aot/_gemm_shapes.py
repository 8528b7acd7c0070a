"""The GEMM shape set: what the offline tuner (build_tools/tune_gemm.py) tunes over and
`python -m gems_aot bench --family gemm` measures.

The linear layers of 1B-70B Llama / Qwen / Mistral style models, each as the three matmuls of
training: the forward x @ W^T ("nt": A row-major, B col-major), the input gradient dy @ W ("nn")
and the weight gradient dy^T @ x ("tn", the token count as the reduction dimension); decode
forwards (M = 1..128); squares. Every aligned training case has an uneven neighbour (a token
count or a size that is no multiple of 16 or of a tile) so that cliffs show.
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


@dataclasses.dataclass(frozen=True)
class Case:
    group: str  # train, decode, square
    name: str  # e.g. "llama3-8b down fwd"
    m: int
    n: int
    k: int
    layout: str  # "nt": A row-major, B col-major; ...
    neighbour: tuple | None = None  # (m, n, k) of the aligned case this uneven one is compared with

    @property
    def flop(self) -> float:
        return 2.0 * self.m * self.n * self.k


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


def cases(groups=("train", "decode", "square")) -> list:
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
    return out


def operands(case: Case, dtype, device="cuda", generator=None):
    """A [m, k] and B [k, n] in the case's layout (a col-major operand is the transpose of a
    row-major tensor, as in the model: W^T, dy^T)."""
    import torch

    def make(rows, cols, row_major):
        if row_major:
            return torch.randn(rows, cols, device=device, dtype=dtype, generator=generator)
        return torch.randn(cols, rows, device=device, dtype=dtype, generator=generator).t()

    return make(case.m, case.k, case.layout[0] == "n"), make(case.k, case.n, case.layout[1] == "n")
