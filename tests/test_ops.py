"""The plain-PyTorch references of trm_fast.ops against their math, in float64."""

import math

import pytest
import torch
from trm_fast import ops
from trm_fast.ops.attention import attention_reference, rope_attention_reference
from trm_fast.ops.rms_norm import add_rms_norm_reference
from trm_fast.ops.rope import rope_reference
from trm_fast.ops.swiglu import swiglu_reference


@pytest.mark.parametrize("shape", [(1, 1, 512), (3, 97, 512), (2, 512, 97), (1, 5, 7)])
@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-6), (torch.bfloat16, 2e-2)])
def test_add_rms_norm(shape, dtype, atol):
    torch.manual_seed(sum(shape))
    x, d = torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype)
    y = add_rms_norm_reference(x, d, 1e-5)
    s = (x + d).double()
    expected = s / torch.sqrt(s.pow(2).mean(-1, keepdim=True) + 1e-5)
    assert y.dtype == dtype
    torch.testing.assert_close(y.double(), expected, atol=atol, rtol=atol)
    torch.testing.assert_close(ops.add_rms_norm(x, d, 1e-5), y)


def test_swiglu():
    torch.manual_seed(0)
    gu = torch.randn(2, 3, 10, dtype=torch.float64)
    g, u = gu[..., :5], gu[..., 5:]
    torch.testing.assert_close(swiglu_reference(gu), g / (1 + torch.exp(-g)) * u)
    torch.testing.assert_close(ops.swiglu(gu), swiglu_reference(gu))


def test_rope_rotates_pairs_and_leaves_position_zero():
    torch.manual_seed(0)
    b, s, h, d = 2, 6, 3, 8
    q, k = torch.randn(b, s, h, d, dtype=torch.float64), torch.randn(b, s, h, d, dtype=torch.float64)
    inv = 1.0 / (10000 ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    ang = torch.outer(torch.arange(s, dtype=torch.float64), inv)
    cos, sin = torch.cat((ang, ang), -1).cos(), torch.cat((ang, ang), -1).sin()
    q2, k2 = rope_reference(q, k, cos, sin)
    torch.testing.assert_close(q2[:, 0], q[:, 0])  # angle 0
    # each (i, i + d/2) pair is rotated by its angle: norms kept, and the rotation by hand
    a, c = q[..., : d // 2], q[..., d // 2:]
    th = ang[None, :, None, :]
    torch.testing.assert_close(q2[..., : d // 2], a * th.cos() - c * th.sin())
    torch.testing.assert_close(q2[..., d // 2:], c * th.cos() + a * th.sin())
    # the model's op: RoPE on q and k of one (B, S, 3H, D) projection, then attention
    v = torch.randn_like(q)
    qkv = torch.cat((q, k, v), dim=2)
    torch.testing.assert_close(ops.rope_attention(qkv, (cos, sin), h), attention_reference(q2, k2, v))


def test_attention_matches_softmax_by_hand():
    torch.manual_seed(0)
    b, s, h, d = 2, 5, 3, 4
    q, k, v = (torch.randn(b, s, h, d, dtype=torch.float64) for _ in range(3))
    scores = torch.einsum("bshd,bthd->bhst", q, k) / math.sqrt(d)
    expected = torch.einsum("bhst,bthd->bshd", scores.softmax(-1), v).reshape(b, s, h * d)
    torch.testing.assert_close(attention_reference(q, k, v), expected)
    qkv = torch.cat((q, k, v), dim=2)  # (B, S, 3H, D): heads of q, then k, then v
    torch.testing.assert_close(rope_attention_reference(qkv, None, None, h), expected)
    torch.testing.assert_close(ops.rope_attention(qkv, None, h), expected)
