"""config.recompute: the gradient-carrying cycle stores each reasoning-module call's inputs only and runs its
layers again in the backward. The same gradients, far fewer bytes kept for the backward."""

import copy

import pytest
import torch
import trm_fast
from helpers import (TRAINING_VARIANT_IDS, TRAINING_VARIANTS, make_batch, rounding_sensitivity, tiny_config,
                     training_grads)
from trm_fast.models.layers import Block

@pytest.mark.parametrize("mode", [True, "mlp"])
@pytest.mark.parametrize("cls, overrides", TRAINING_VARIANTS, ids=TRAINING_VARIANT_IDS)
def test_recompute_gives_the_same_gradients_and_keeps_less(cls, overrides, mode):
    # off a GPU "mlp" checkpoints each module call as true does
    plain, plain_bytes = training_grads(cls, overrides, False)
    again, again_bytes = training_grads(cls, overrides, mode)
    assert plain.keys() == again.keys()
    for name in plain:
        torch.testing.assert_close(again[name], plain[name], atol=1e-6, rtol=1e-6, msg=name)
    # kept: two inputs per module call instead of every layer's activations
    assert again_bytes < plain_bytes / 3, (again_bytes, plain_bytes)


def test_recompute_is_off_by_default_and_checked():
    assert trm_fast.TRM(tiny_config()).inner.L_level.recompute is False
    for bad in ("yes", "attention", 1):
        with pytest.raises(ValueError, match=f"config field 'recompute' must be true, false or one of 'mlp', "
                                             f"got {bad!r}"):
            trm_fast.TRM(tiny_config(recompute=bad))


@pytest.mark.parametrize("overrides", [dict(), dict(pos_encodings="none", mlp_t=True)], ids=["attention", "mlp-t"])
@pytest.mark.parametrize("mode, mixer, mlp", [(False, False, False), (True, True, True), ("mlp", False, True)])
def test_recompute_mlp_leaves_the_token_mixer_keeping_its_activations(overrides, mode, mixer, mlp):
    # "mlp": the channel MLP's ops recompute its gate/up projection, the attention's (or MLP-t's) keep theirs
    module = trm_fast.TRM(tiny_config(recompute=mode, **overrides)).inner.L_level
    block = module.layers[0]
    assert (block.mlp_t if overrides else block.self_attn).recompute is mixer and block.mlp.recompute is mlp
    assert module.recompute is bool(mode)


def test_evaluation_does_not_recompute(monkeypatch):
    model = trm_fast.TRM(tiny_config(recompute=True)).eval()
    calls = []
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", lambda *a, **k: calls.append(1))
    batch = make_batch(tiny_config())
    with torch.no_grad():
        model(carry=model.initial_carry(batch), batch=batch)
    assert not calls


def _compiled_off(plain, again, sensitivity, atol, rtol):
    """The tensors of `again` off from `plain` by more than (atol, rtol) and more than four times what fp32's
    rounding alone moves them (`rounding_sensitivity`), with their largest difference and that sensitivity."""
    # a nudge that changed the steps' course (a halting decision) would make any difference look like rounding
    assert max(sensitivity.values()) < 1e-3, f"the nudged weights changed more than rounding: {sensitivity}"
    off = {}
    for name in plain:
        worst = (again[name] - plain[name]).abs().max().item()
        if not torch.allclose(again[name], plain[name], atol=atol, rtol=rtol) and worst > 4 * sensitivity[name]:
            off[name] = (worst, sensitivity[name])
    return off


@pytest.mark.gpu
@pytest.mark.parametrize("mode", [True, "mlp"])
@pytest.mark.parametrize("cls, overrides", TRAINING_VARIANTS, ids=TRAINING_VARIANT_IDS)
def test_compiled_recompute_on_the_gpu_matches_eager(cls, overrides, mode):
    plain, sensitivity = rounding_sensitivity(cls, overrides, device="cuda")
    again, _ = training_grads(cls, overrides, mode, device="cuda", compile=True)
    # inductor's fused kernels sum in another order; every tensor off is named
    off = _compiled_off(plain, again, sensitivity, atol=1e-4, rtol=1e-3)
    assert not off, f"gradients off (largest difference, fp32's own): {off}"


@pytest.mark.parametrize("cls, overrides", TRAINING_VARIANTS, ids=TRAINING_VARIANT_IDS)
def test_compiled_recompute_compiles_block_by_block_with_the_same_gradients(cls, overrides):
    # compiled whole, the backward would recompute every call at once (the module docstring of
    # engine/training.py); block by block, each checkpoint recomputes its own call
    plain, sensitivity = rounding_sensitivity(cls, overrides)
    again, saved = training_grads(cls, overrides, True, compile=True)
    off = _compiled_off(plain, again, sensitivity, atol=1e-5, rtol=1e-4)
    assert not off, f"gradients off (largest difference, fp32's own): {off}"
    assert 0 < saved < training_grads(cls, overrides, False)[1] / 3


def test_the_evaluation_copy_of_a_block_compiled_model_computes_with_its_own_weights():
    # the trainer deep-copies its model for the EMA evaluation; the copy's compiled blocks must not call
    # the original's
    model = trm_fast.TRM(tiny_config(recompute=True)).train()
    head = trm_fast.ACTLossHead(model, "stablemax_cross_entropy")
    assert trm_fast.engine.training_forward(head, "cpu", True) is head
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for block in (m for m in twin.modules() if isinstance(m, Block)):
            for p in block.parameters():
                p.mul_(0.5)
    plain = trm_fast.TRM(tiny_config()).train()
    plain.load_state_dict(twin.state_dict())
    batch = make_batch(tiny_config())
    with torch.no_grad():
        ours = twin(carry=twin.initial_carry(batch), batch=batch)[1]["logits"]
        expected = plain(carry=plain.initial_carry(batch), batch=batch)[1]["logits"]
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
