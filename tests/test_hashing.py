import math

import numpy as np
import pytest
import torch

from bprlab.config.enums import Estimator
from bprlab.core.hashing import hash_beta, pack_codes, relaxed_code, scaled_tanh, sign_code, straight_through_sign, unpack_codes
from bprlab.core.scoring import inner_product_from_hamming


def test_beta_schedule_is_hashnet_sqrt():
    assert hash_beta(0, 0.1) == 1.0
    assert hash_beta(10, 0.1) == pytest.approx(math.sqrt(2.0))
    assert hash_beta(30, 0.1) == pytest.approx(2.0)
    assert hash_beta(1000, 0.01) == pytest.approx(math.sqrt(11.0))
    assert hash_beta(123, 0.0) == 1.0  # gamma 0: plain tanh


def test_beta_rejects_negative_step():
    with pytest.raises(ValueError):
        hash_beta(-1, 0.1)


def test_sign_maps_zero_to_plus_one():
    x = torch.tensor([-2.0, -0.0, 0.0, 1e-9, 3.0])
    assert sign_code(x).tolist() == [-1.0, 1.0, 1.0, 1.0, 1.0]


def test_scaled_tanh_gradient_is_beta_sech2():
    x = torch.tensor([0.3, -0.7], requires_grad=True)
    beta = 2.5
    scaled_tanh(x, beta).sum().backward()
    expected = beta * (1 - torch.tanh(beta * x.detach()) ** 2)
    assert torch.allclose(x.grad, expected)


def test_ste_forward_is_sign_backward_is_tanh_gradient():
    x = torch.tensor([0.3, -0.7, 0.0], requires_grad=True)
    y = straight_through_sign(x)
    assert y.tolist() == [1.0, -1.0, 1.0]
    y.sum().backward()
    assert torch.allclose(x.grad, 1 - torch.tanh(x.detach()) ** 2)


def test_fixed_estimator_ignores_schedule():
    x = torch.tensor([0.5])
    assert torch.allclose(relaxed_code(x, Estimator.fixed, beta=100.0, fixed_beta=2.0), torch.tanh(torch.tensor([1.0])))
    assert torch.allclose(relaxed_code(x, Estimator.scaled_tanh, beta=3.0), torch.tanh(torch.tensor([1.5])))


def test_pack_uses_numpy_packbits_order_and_roundtrips():
    emb = np.array([[1, -1, -1, -1, -1, -1, -1, 0.0, -1, -1, -1, -1, -1, -1, -1, 2]], np.float32)
    packed = pack_codes(emb)
    assert packed.tolist() == [[0b10000001, 0b00000001]]  # bit 1 for >= 0, first coordinate = high bit
    assert unpack_codes(packed, 16).tolist() == sign_code(torch.from_numpy(emb)).tolist()


def test_a_vector_that_is_not_finite_is_refused_not_packed_as_zeros():
    from bprlab.errors import InputError

    emb = np.ones((3, 16), np.float32)
    emb[1, 4], emb[2, 0] = np.nan, -np.inf
    with pytest.raises(InputError, match="2 of 3 are not finite"):
        pack_codes(emb)


def test_inner_product_equals_d_minus_twice_hamming():
    rng = np.random.default_rng(0)
    a, b = np.sign(rng.standard_normal((2, 64)))
    assert a @ b == inner_product_from_hamming(int((a != b).sum()), 64)
