import pytest
import torch
import torch.nn.functional as F
import trm_fast
from trm_fast.models.losses import log_stablemax, softmax_cross_entropy, stablemax_cross_entropy


def test_stablemax_by_hand():
    logits = torch.tensor([[2.0, -1.0, 0.0]])
    s = torch.tensor([3.0, 0.5, 1.0])  # x + 1 for x >= 0, 1 / (1 - x) below
    torch.testing.assert_close(log_stablemax(logits), torch.log(s / s.sum()).unsqueeze(0).double().float())
    loss = stablemax_cross_entropy(logits.unsqueeze(0), torch.tensor([[0]]))
    assert loss.dtype == torch.float64
    torch.testing.assert_close(loss, -torch.log(torch.tensor([[3.0 / 4.5]], dtype=torch.float64)))


@pytest.mark.parametrize("fn", [stablemax_cross_entropy, softmax_cross_entropy])
def test_masked_tokens_give_zero_loss(fn):
    logits = torch.randn(2, 5, 7)
    labels = torch.randint(0, 7, (2, 5))
    labels[0, 1] = labels[1, 4] = -100
    loss = fn(logits, labels, ignore_index=-100, valid_mask=labels != -100)
    assert loss[0, 1] == 0 and loss[1, 4] == 0 and (loss[labels != -100] > 0).all()
    torch.testing.assert_close(fn(logits, labels), loss)  # mask derived from ignore_index when not given


def test_softmax_cross_entropy_matches_torch():
    logits, labels = torch.randn(3, 4, 6), torch.randint(0, 6, (3, 4))
    expected = F.cross_entropy(logits.view(-1, 6), labels.view(-1), reduction="none").view(3, 4)
    torch.testing.assert_close(softmax_cross_entropy(logits, labels), expected)


class _FixedModel(torch.nn.Module):
    """Returns chosen logits, so every metric of the loss head is known in advance."""

    def __init__(self, logits, q_halt, halted, steps):
        super().__init__()
        self.out = dict(logits=logits, q_halt_logits=q_halt, q_continue_logits=torch.zeros_like(q_halt))
        self.halted, self.steps = halted, steps

    def forward(self, carry, batch):
        from trm_fast.models import Carry
        return Carry(None, self.steps, self.halted, dict(batch)), dict(self.out)


@pytest.mark.parametrize("loss_type", ["stablemax_cross_entropy", "softmax_cross_entropy"])
def test_loss_head_metrics_and_reductions(loss_type):
    labels = torch.tensor([[1, 2, 0], [1, 1, -100], [2, 2, 2], [-100, -100, -100]])
    logits = torch.full((4, 3, 3), -4.0)
    preds = torch.tensor([[1, 2, 0], [1, 0, 0], [2, 2, 2], [0, 0, 0]])  # rows: right, 1/2 right, right, no labels
    logits.scatter_(-1, preds.unsqueeze(-1), 4.0)
    q_halt = torch.tensor([1.0, 1.0, -1.0, 1.0])
    halted = torch.tensor([True, True, False, True])  # row 2 is not counted: it did not halt
    steps = torch.tensor([3, 4, 5, 6], dtype=torch.int32)
    head = trm_fast.ACTLossHead(_FixedModel(logits, q_halt, halted, steps), loss_type)
    _, loss, m, out, all_halted = head(return_keys=["preds"], carry=None, batch=dict(labels=labels))
    assert m["count"] == 2 and m["exact_accuracy"] == 1
    torch.testing.assert_close(m["accuracy"], torch.tensor(1.0 + 0.5))
    assert m["q_halt_accuracy"] == 1  # row 0: q >= 0 and correct; row 1: q >= 0 but wrong
    assert m["steps"] == 3 + 4
    assert torch.equal(out["preds"], preds) and not all_halted
    # sums over rows of per-row means over labelled tokens
    per_token = head.loss_fn(logits, labels, valid_mask=labels != -100)
    lm = (per_token / (labels != -100).sum(-1, keepdim=True).clamp_min(1)).sum()
    q = F.binary_cross_entropy_with_logits(q_halt, torch.tensor([1.0, 0.0, 1.0, 1.0]), reduction="sum")
    torch.testing.assert_close(m["lm_loss"], lm)
    torch.testing.assert_close(loss, lm + 0.5 * q)
    assert "q_continue_loss" not in m


def test_unknown_loss_type_is_named():
    with pytest.raises(ValueError, match="loss_type must be one of 'stablemax_cross_entropy', 'softmax_cross_entropy', got 'mse'"):
        trm_fast.ACTLossHead(torch.nn.Identity(), "mse")
