"""CPU tests of gems_aot.patch / unpatch on small transformers models (Llama, Mistral, Qwen2,
Qwen3, Gemma, Gemma 2, GPT-2): what is recognised, that the model computes the same (CPU tensors
take the original paths; the causal-LM loss also with the interpreted fused kernel), and that
unpatch restores."""

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
    assert report == {k: v for k, v in {"rms_norm": norms, "gated_mlp": 2, "rotary": 1, "lm_loss": 1}.items() if v}
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


# name -> (config class, model class, config arguments, what patch() swaps besides the lm loss).
SMALL = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64)
MODELS = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", SMALL, {"rms_norm": 5, "gated_mlp": 2, "rotary": 1}),
    "mistral": ("MistralConfig", "MistralForCausalLM", SMALL, {"rms_norm": 5, "gated_mlp": 2, "rotary": 1}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", SMALL, {"rms_norm": 5, "gated_mlp": 2, "rotary": 1}),
    # Qwen3 normalises q and k per head too: two more RMSNorms a layer.
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(SMALL, head_dim=16), {"rms_norm": 9, "gated_mlp": 2,
                                                                            "rotary": 1}),
    # Gemma's RMSNorm scales by (1 + weight) and has no variance_epsilon: left alone.
    "gemma": ("GemmaConfig", "GemmaForCausalLM", dict(SMALL, head_dim=16), {"gated_mlp": 2, "rotary": 1}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", dict(SMALL, head_dim=16, final_logit_softcapping=5.0),
               {"gated_mlp": 2, "rotary": 1}),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(vocab_size=96, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                                                   bos_token_id=0, eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0,
                                                   attn_pdrop=0.0), {}),
}


def small_model(name):
    config_cls, model_cls, kwargs, _ = MODELS[name]
    torch.manual_seed(0)
    model = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**kwargs))
    # Float64: the unpatched and patched losses then differ only by summation order.
    return model.double().train()


def loss_and_grads(model, ids, **kwargs):
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, labels=ids, **kwargs)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", MODELS)
def test_patch_models(name):
    """Each model: the report; eval logits unchanged; the training loss (labels given) the same
    loss and gradients through the fused loss (logits None); unpatch restores."""
    model = small_model(name)
    ids = torch.randint(0, 96, (2, 11))
    ids[0, 3] = -100  # an ignored label (as padding): the loss skips it
    inputs = ids.clamp(min=0)
    with torch.no_grad():
        expected_logits = model(input_ids=inputs).logits
    ref, ref_grads = loss_and_grads(model, inputs)
    ref_loss = model(input_ids=inputs, labels=ids).loss.detach()
    expected = dict(MODELS[name][3], lm_loss=1)
    if not _patch._rms_norm_has_autograd():
        expected.pop("rms_norm", None)
    assert gems.patch(model) == expected
    try:
        with torch.no_grad():
            torch.testing.assert_close(model(input_ids=inputs).logits, expected_logits, rtol=0, atol=0)
        out, grads = loss_and_grads(model, inputs)
        assert out.logits is None and out.loss.dtype == ref.loss.dtype
        torch.testing.assert_close(out.loss, ref.loss.detach())
        assert grads.keys() == ref_grads.keys()
        for n, g in grads.items():
            torch.testing.assert_close(g, ref_grads[n], msg=n)
        torch.testing.assert_close(model(input_ids=inputs, labels=ids).loss, ref_loss)  # ignore_index -100
        items = torch.tensor(7)
        with torch.no_grad():  # no gradients: the model's own forward, logits and all
            own = model(input_ids=inputs, labels=ids, num_items_in_batch=items)
        assert own.logits is not None
        torch.testing.assert_close(model(input_ids=inputs, labels=ids, num_items_in_batch=items).loss, own.loss)
    finally:
        assert gems.unpatch(model) == expected
    assert all("forward" not in vars(m) for m in model.modules())


def test_lm_loss_through_the_interpreted_kernel(monkeypatch):
    """The patched Llama's training loss and gradients with the fused path itself (its kernel
    interpreted) against the unpatched model's, in float32."""
    from conftest import skip_without_interpreter_loops
    from test_linear_ce_cpu import run_kernel

    from gems_aot import _linear_ce

    skip_without_interpreter_loops()
    monkeypatch.setattr(_linear_ce, "_kernel_takes", lambda *args: True)
    monkeypatch.setattr(_linear_ce, "_loss_and_grad_", lambda logits, target, ignore_index, smoothing, softcap, scale:
                        run_kernel(logits, target, ignore_index, smoothing, softcap, scale, block_v=32))
    model = small_model("llama").float()
    ids = torch.randint(0, 96, (2, 9))
    ref, ref_grads = loss_and_grads(model, ids)
    gems.patch(model)
    try:
        out, grads = loss_and_grads(model, ids)
    finally:
        gems.unpatch(model)
    assert out.logits is None
    torch.testing.assert_close(out.loss, ref.loss.detach(), rtol=1e-5, atol=1e-6)
    for n, g in grads.items():
        torch.testing.assert_close(g, ref_grads[n], rtol=1e-4, atol=1e-6, msg=n)
