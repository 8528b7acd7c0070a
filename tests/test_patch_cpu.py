"""CPU tests of gems_aot.patch / unpatch on a small transformers Llama: what is recognised, that
the model computes the same (CPU tensors take the original paths), and that unpatch restores."""

import pytest
import torch

gems = pytest.importorskip("gems_aot", reason="the extension is not built")
transformers = pytest.importorskip("transformers")

from gems_aot import _patch  # noqa: E402


def tiny_llama():
    config = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


def test_patch_and_unpatch_llama():
    import transformers.models.llama.modeling_llama as modeling

    model = tiny_llama()
    original_rotary = modeling.apply_rotary_pos_emb
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.randint(0, 128, (2, 9))
    with torch.no_grad():
        expected = model(ids).logits
    report = gems.patch(model)
    norms = 2 * 2 + 1 if _patch._rms_norm_has_autograd() else 0
    assert report == {k: v for k, v in {"rms_norm": norms, "gated_mlp": 2, "rotary": 1}.items() if v}
    assert modeling.apply_rotary_pos_emb is not original_rotary
    assert gems.patch(model) == {}  # idempotent
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, expected, rtol=0, atol=0)  # CPU: the original paths
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert gems.unpatch(model) == report
    assert modeling.apply_rotary_pos_emb is original_rotary
    assert all("forward" not in vars(m) for m in model.modules())


def test_gated_activations_recognised():
    import functools

    def mlp(act, bias=False):
        m = torch.nn.Module()
        m.gate_proj, m.up_proj, m.down_proj = (torch.nn.Linear(4, 4, bias=bias) for _ in range(3))
        m.act_fn = act
        return m

    assert _patch._gated_activation(mlp(torch.nn.SiLU())) == "silu"
    assert _patch._gated_activation(mlp(torch.nn.GELU(approximate="tanh"))) == "tanh"
    assert _patch._gated_activation(mlp(torch.nn.GELU())) == "none"
    assert _patch._gated_activation(mlp(torch.nn.SiLU(), bias=True)) is None
    assert _patch._gated_activation(mlp(torch.nn.ReLU())) is None
    tanh = torch.nn.Module()
    tanh.act = functools.partial(torch.nn.functional.gelu, approximate="tanh")
    assert _patch._gated_activation(mlp(tanh)) is None


def test_unknown_models_are_left_alone():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    assert gems.patch(model) == {} and gems.unpatch(model) == {}


def test_rotary_wrapper_reads_unsqueeze_dim_of_either_signature():
    calls = []

    def new_style(q, k, cos, sin, unsqueeze_dim=1):
        calls.append(unsqueeze_dim)
        return q, k

    def old_style(q, k, cos, sin, position_ids=None, unsqueeze_dim=1):
        calls.append(unsqueeze_dim)
        return q, k

    t = torch.zeros(1, 2, 3, 4)
    c = torch.zeros(1, 3, 4)
    _patch._gems_apply_rotary(new_style)(t, t, c, c, 2)
    _patch._gems_apply_rotary(old_style)(t, t, c, c, None, 2)
    _patch._gems_apply_rotary(old_style)(t, t, c, c, unsqueeze_dim=2)
    assert calls == [2, 2, 2]  # CPU tensors: the original ran, with the caller's arguments


def test_optimizer_switches_to_fused_and_back(monkeypatch):
    """Adam / AdamW groups go to fused=True and back; the step is the same update (CPU tensors
    stand in for CUDA ones here: torch has a CPU fused Adam)."""
    monkeypatch.setattr(_patch, "_fusable", lambda p: p.dtype == torch.float32)
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7))]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    reference = torch.optim.AdamW(twins, lr=1e-2, weight_decay=0.1)
    model = torch.nn.Linear(2, 2)

    def step(o, ps, seed):
        g = torch.Generator().manual_seed(seed)
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g)
        o.step()

    step(opt, params, 1)
    step(reference, twins, 1)
    assert gems.patch(model, opt) == {"fused_optimizer_groups": 1}
    assert opt.param_groups[0]["fused"] is True and opt.param_groups[0]["foreach"] is False
    assert gems.patch(model, opt) == {}  # idempotent
    for seed in (2, 3):
        step(opt, params, seed)
        step(reference, twins, seed)
    for p, q in zip(params, twins):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)
    assert float(opt.state[params[0]]["step"]) == 3
    assert gems.unpatch(model, opt) == {"fused_optimizer_groups": 1}
    assert opt.param_groups[0]["fused"] is None and opt.param_groups[0]["foreach"] is None
    assert opt.state[params[0]]["step"].device.type == "cpu"
    step(opt, params, 4)  # the default path again
    assert float(opt.state[params[0]]["step"]) == 4


def test_other_optimizers_and_cpu_params_are_left_alone():
    model = torch.nn.Linear(2, 2)
    assert gems.patch(model, torch.optim.SGD(model.parameters(), lr=0.1)) == {}
    assert gems.patch(model, torch.optim.AdamW(model.parameters())) == {}  # CPU parameters
