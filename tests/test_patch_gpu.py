"""GPU tests of gems_aot.patch: a patched transformers Llama computes the unpatched one's logits,
loss and gradients (fp32 tightly, bf16 within its rounding), with and without enable(), and its
optimizer step matches the foreach one."""

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def gems():
    return pytest.importorskip("gems_aot")


def llama(dtype):
    config = transformers.LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=344, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).to("cuda", dtype)


def loss_and_grads(model, ids):
    model.zero_grad(set_to_none=True)
    logits = model(ids).logits
    loss = F.cross_entropy(logits.float().flatten(0, 1)[:-1], ids.flatten()[1:])
    loss.backward()
    return logits.detach(), loss.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("enabled", [False, True])
@pytest.mark.parametrize("dtype,rtol,atol", [(torch.float32, 2e-4, 2e-4), (torch.bfloat16, 5e-2, 5e-2)], ids=str)
def test_patched_llama_matches(gems, dtype, rtol, atol, enabled):
    model = llama(dtype)
    ids = torch.randint(0, 256, (2, 48), device="cuda")
    logits, loss, grads = loss_and_grads(model, ids)
    report = gems.patch(model)
    assert report.get("gated_mlp") == 2 and report.get("rotary") == 1
    try:
        with gems.use_gems(include=None if enabled else []):
            p_logits, p_loss, p_grads = loss_and_grads(model, ids)
    finally:
        gems.unpatch(model)
    torch.testing.assert_close(p_logits, logits, rtol=rtol, atol=atol)
    torch.testing.assert_close(p_loss, loss, rtol=rtol, atol=atol)
    for name, g in grads.items():
        scale = g.abs().max().item() or 1.0
        torch.testing.assert_close(p_grads[name] / scale, g / scale, rtol=rtol, atol=atol, msg=name)


def test_patched_optimizer_matches_foreach(gems):
    model = llama(torch.float32)
    twin = llama(torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ref = torch.optim.AdamW(twin.parameters(), lr=1e-3)
    ids = torch.randint(0, 256, (2, 32), device="cuda")
    # The optimizer alone (a patched model's gradients differ in rounding, and Adam's update of a
    # near-zero gradient turns that into differences of up to lr).
    unrelated = torch.nn.Identity()
    assert gems.patch(unrelated, opt) == {"fused_optimizer_groups": 1}
    try:
        for _ in range(3):
            for m, o in ((model, opt), (twin, ref)):
                loss_and_grads(m, ids)
                o.step()
    finally:
        gems.unpatch(unrelated, opt)
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("name", ["llama", "qwen3", "gemma2", "gpt2"])
@pytest.mark.parametrize("dtype,rtol,atol", [(torch.float32, 2e-4, 2e-4), (torch.bfloat16, 5e-2, 5e-2)], ids=str)
def test_patched_training_loss_matches(gems, name, dtype, rtol, atol):
    """model(ids, labels=ids).loss and every gradient with the whole patch (the fused linear +
    cross-entropy included, logits None) under enable(), against the unpatched model on ATen."""
    from test_patch_cpu import MODELS

    config_cls, model_cls, kwargs, _ = MODELS[name]
    torch.manual_seed(0)
    model = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**kwargs)).to("cuda", dtype).train()
    ids = torch.randint(0, kwargs["vocab_size"], (2, 40), device="cuda")
    labels = ids.clone()
    labels[:, :5] = -100

    def run():
        model.zero_grad(set_to_none=True)
        out = model(input_ids=ids, labels=labels)
        out.loss.backward()
        return out, {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}

    with gems.use_gems(include=[]):
        ref, ref_grads = run()
    assert gems.patch(model)["lm_loss"] == 1
    try:
        with gems.use_gems():
            out, grads = run()
    finally:
        gems.unpatch(model)
    assert out.logits is None
    torch.testing.assert_close(out.loss.float(), ref.loss.float(), rtol=rtol, atol=atol)
    for n, g in ref_grads.items():
        scale = g.abs().max().item() or 1.0
        torch.testing.assert_close(grads[n] / scale, g / scale, rtol=rtol, atol=atol, msg=n)
