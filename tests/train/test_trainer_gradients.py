"""The trainer's step on a GPU ('auto': trm_fast's add + RMSNorm and SwiGLU kernels with their backward,
under torch.compile; with recompute, the ops that recompute inside the layers too) against the official
model's (reference ops, eager): the gradients of every parameter and of the puzzle embedding's local rows, in
fp32, after a step that resets every row and after one with halted rows among them."""

import pytest
import torch
from helpers import TRAINING_VARIANT_IDS, TRAINING_VARIANTS, training_grads

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("cls, overrides", TRAINING_VARIANTS, ids=TRAINING_VARIANT_IDS)
@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("recompute", [False, True], ids=["auto", "auto+recompute"])
def test_trainer_step_gradients_match_the_reference(cls, overrides, steps, recompute):
    # with recompute, the ops that keep a sublayer's input alone (trm_fast.ops.recomputed_*) run the gradient cycle
    want, kept = training_grads(cls, overrides, False, device="cuda", steps=steps, backend="reference")
    got, kept_here = training_grads(cls, overrides, recompute, device="cuda", compile=True, steps=steps,
                                    backend="auto")
    assert got.keys() == want.keys()
    for name in want:  # fp32: the kernels and inductor sum in other orders than PyTorch's eager ops
        torch.testing.assert_close(got[name], want[name], atol=1e-4, rtol=1e-3, msg=name)
    if recompute:
        assert kept_here < kept / 2, (kept_here, kept)
