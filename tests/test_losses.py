import math

import numpy as np
import pytest
import torch

from models.flowdistill import (VIB, gaussian_kl, neighbours, spatial_correlation_loss, teacher_bounded_loss,
                                temporal_correlation_loss)


def test_teacher_bounded_loss_gate_and_targets():
    truth = torch.tensor([[2.0, 4.0]])
    student = torch.tensor([[3.0, 6.0]])            # masked MAE 1.5
    good_teacher = torch.tensor([[2.0, 5.0]])       # MAE 0.5: teacher - student = -1 < delta
    loss, share, teacher_mae = teacher_bounded_loss(student, good_teacher, truth, delta=0.1, target="truth")
    assert share == 1.0 and math.isclose(loss.item(), 1.5) and math.isclose(teacher_mae, 0.5)
    loss, share, _ = teacher_bounded_loss(student, good_teacher, truth, delta=0.1, target="teacher")
    assert share == 1.0 and math.isclose(loss.item(), (1.0 + 1.0) / 2)   # |3-2|, |6-5|
    bad_teacher = torch.tensor([[12.0, 14.0]])      # MAE 10: teacher - student = 8.5 >= delta 3
    loss, share, _ = teacher_bounded_loss(student, bad_teacher, truth, delta=3.0)
    assert share == 0.0 and loss.item() == 0.0
    _, share, _ = teacher_bounded_loss(student, bad_teacher, truth, delta=10.0)   # 8.5 < 10
    assert share == 1.0


def test_element_gate_and_masked_teacher_target_hand_computed():
    # four elements; the last has truth 0 and is masked out of every mean (3 unmasked elements)
    truth = torch.tensor([[10.0, 10.0, 10.0, 0.0]])
    student = torch.tensor([[12.0, 10.0, 4.0, 5.0]], requires_grad=True)   # |err| 2, 0, 6, (5)
    teacher = torch.tensor([[11.0, 13.0, 10.0, 9.0]])                     # |err| 1, 3, 0, (9)
    # element gate, delta 1: teacher - student = -1, 3, -6 -> open, closed, open
    loss, share, teacher_mae = teacher_bounded_loss(student, teacher, truth, 1.0, "truth", "element")
    assert share == pytest.approx(2 / 3) and teacher_mae == pytest.approx(4 / 3)
    assert loss.item() == pytest.approx((2 + 6) / 3)
    loss, _, _ = teacher_bounded_loss(student, teacher, truth, 1.0, "teacher", "element")
    assert loss.item() == pytest.approx((1 + 6) / 3)                        # |12-11|, |4-10|
    loss.backward()                                                       # gradient only where open
    assert student.grad[0].tolist() == pytest.approx([1 / 3, 0.0, -1 / 3, 0.0])
    # batch gate on the same batch: teacher 4/3 - student 8/3 < 1 -> open everywhere unmasked
    loss, share, _ = teacher_bounded_loss(student, teacher, truth, 1.0, "teacher", "batch")
    assert share == 1.0 and loss.item() == pytest.approx((1 + 3 + 6) / 3)   # masked: the 4th element left out
    with pytest.raises(ValueError, match="tbl_gate='window'; use one of batch, element"):
        teacher_bounded_loss(student, teacher, truth, 1.0, "truth", "window")
    with pytest.raises(ValueError, match="tbl_target='both'; use one of truth, teacher"):
        teacher_bounded_loss(student, teacher, truth, 1.0, "both")


def test_neighbours_pick_strongest_edges_and_pad():
    adj = np.array([[1, 0.5, 0.9], [0.5, 1, 0], [0.9, 0, 1]])
    index, valid = neighbours(adj, 2)
    assert index.tolist() == [[2, 1], [0, 1], [0, 2]]
    assert valid.tolist() == [[True, True], [True, False], [True, False]]


def test_spatial_correlation_loss_hand_computed():
    # B=1, H=1, N=3, C=1; region 0 has neighbours 1 and 2, regions 1 and 2 have only region 0
    index = torch.tensor([[1, 2], [0, 1], [0, 2]])
    valid = torch.tensor([[True, True], [True, False], [True, False]])
    pred = torch.tensor([1.0, 4.0, 2.0]).view(1, 1, 3, 1)
    truth = torch.tensor([1.0, 3.0, 2.0]).view(1, 1, 3, 1)
    # smoothness: |1-4| + |1-2| + |4-1| + |2-1| over 4 valid pairs = 8/4
    assert math.isclose(spatial_correlation_loss(pred, truth, index, valid, "smoothness").item(), 2.0)
    # difference: pred contrasts -3, -1, 3, 1; true contrasts -2, -1, 2, 1 -> |.| = 1, 0, 1, 0 -> 0.5
    assert math.isclose(spatial_correlation_loss(pred, truth, index, valid, "difference").item(), 0.5)
    assert spatial_correlation_loss(truth, truth, index, valid, "difference").item() == 0.0


def test_temporal_correlation_loss_hand_computed():
    pred = torch.tensor([0.0, 1.0, 3.0]).view(1, 3, 1, 1)
    truth = torch.tensor([0.0, 1.0, 1.0]).view(1, 3, 1, 1)
    # window 4 -> lags 1, 2 (capped by H_out - 1 = 2)
    # smoothness: lag1 |0-1|, |1-3|; lag2 |0-3| -> (1 + 2 + 3) / 3
    assert math.isclose(temporal_correlation_loss(pred, truth, 4, "smoothness").item(), 2.0)
    # difference: lag1 (-1 - -1), (-2 - 0); lag2 (-3 - -1) -> (0 + 2 + 2) / 3
    assert math.isclose(temporal_correlation_loss(pred, truth, 4, "difference").item(), 4 / 3, rel_tol=1e-6)
    # window 2 -> lag 1 only
    assert math.isclose(temporal_correlation_loss(pred, truth, 2, "smoothness").item(), 1.5)


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, var = torch.randn(4, 5, 7, generator=g), torch.rand(4, 5, 7, generator=g) + 0.1
    q = torch.distributions.Normal(mu, var.sqrt())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(q, p).sum(-1).mean()
    assert torch.allclose(gaussian_kl(mu, var), expected, atol=1e-5)


def test_vib_samples_with_std_by_default_and_uses_mean_in_eval():
    torch.manual_seed(0)
    vib = VIB(3, 2)
    with torch.no_grad():
        vib.stats.weight.zero_()
        vib.stats.bias.copy_(torch.tensor([1.0, -1.0, math.log(math.e ** 4 - 1), math.log(math.e ** 4 - 1)]))
    z, mu, var = vib(torch.zeros(20000, 3))        # var = softplus = 4 -> std 2
    assert torch.allclose(var, torch.full_like(var, 4.0), atol=1e-4)
    assert abs(z[:, 0].std().item() - 2.0) < 0.05 and abs(z[:, 0].mean().item() - 1.0) < 0.05
    vib.eps_scale = "variance"
    assert abs(vib(torch.zeros(20000, 3))[0][:, 0].std().item() - 4.0) < 0.1
    vib.eval()
    z, mu, _ = vib(torch.zeros(2, 3))
    assert torch.equal(z, mu)
