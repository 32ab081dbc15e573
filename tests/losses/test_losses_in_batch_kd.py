"""in_batch_kd_loss against a hand formula with F.kl_div, a naive per-query loop, column removal, and gradcheck."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tct_hf.losses import InBatchKDLoss, in_batch_kd_loss


def random_scores(num_queries=3, num_negatives=1, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    shape = (num_queries, num_queries * (1 + num_negatives))
    student = torch.randn(shape, generator=generator, dtype=dtype) * 3
    teacher = torch.randn(shape, generator=generator, dtype=dtype) * 3
    return student, teacher


def naive_kl(student_row, teacher_row, temperature, student_temperature, skip=()):
    """KL(p || q) of one query with Python floats, skipping the columns in `skip`."""
    keep = [j for j in range(len(student_row)) if j not in skip]
    t_norm = sum(math.exp(teacher_row[j] / temperature) for j in keep)
    s_norm = sum(math.exp(student_row[j] / student_temperature) for j in keep)
    total = 0.0
    for j in keep:
        p = math.exp(teacher_row[j] / temperature) / t_norm
        q = math.exp(student_row[j] / student_temperature) / s_norm
        total += p * math.log(p / q)
    return total


def test_equals_hand_formula_with_f_kl_div():
    student, teacher = random_scores(num_queries=4, num_negatives=2)
    expected = F.kl_div(F.log_softmax(student, dim=1), F.softmax(teacher / 0.25, dim=1), reduction="batchmean")
    torch.testing.assert_close(in_batch_kd_loss(student, teacher), expected, atol=1e-12, rtol=0)


def test_equals_naive_loop_with_both_temperatures():
    student, teacher = random_scores(num_queries=3, num_negatives=1, seed=1)
    rows = [naive_kl(student[i].tolist(), teacher[i].tolist(), 0.5, 2.0) for i in range(3)]
    got = in_batch_kd_loss(student, teacher, temperature=0.5, student_temperature=2.0)
    assert got.item() == pytest.approx(sum(rows) / 3, abs=1e-10)


def test_default_temperatures_are_the_published_recipe():
    student, teacher = random_scores(seed=2)
    expected = F.kl_div(F.log_softmax(student, 1), F.softmax(teacher / 0.25, 1), reduction="batchmean")
    untempered = F.kl_div(F.log_softmax(student, 1), F.softmax(teacher, 1), reduction="batchmean")
    got = in_batch_kd_loss(student, teacher)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, untempered)


def test_ce_weight_adds_cross_entropy_on_the_diagonal():
    student, teacher = random_scores(num_queries=3, num_negatives=2, seed=3)
    kd = F.kl_div(F.log_softmax(student, 1), F.softmax(teacher / 0.25, 1), reduction="batchmean")
    ce = F.cross_entropy(student, torch.arange(3))
    torch.testing.assert_close(in_batch_kd_loss(student, teacher, ce_weight=0.7), kd + 0.7 * ce)


def test_identical_distributions_give_zero():
    student, _ = random_scores(seed=4)
    assert in_batch_kd_loss(student, student * 0.25).item() == pytest.approx(0.0, abs=1e-12)


def test_mask_equals_removing_the_column():
    student, teacher = random_scores(num_queries=3, num_negatives=1, seed=5)
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[:, 4] = True
    keep = [0, 1, 2, 3, 5]
    expected = in_batch_kd_loss(student[:, keep], teacher[:, keep], ce_weight=0.5)
    torch.testing.assert_close(in_batch_kd_loss(student, teacher, ce_weight=0.5, mask=mask), expected)


def test_row_specific_mask_equals_naive_loop():
    student, teacher = random_scores(num_queries=3, num_negatives=1, seed=6)
    skips = [{3}, {0, 5}, set()]
    mask = torch.zeros(3, 6, dtype=torch.bool)
    for i, skip in enumerate(skips):
        mask[i, list(skip)] = True
    expected = sum(naive_kl(student[i].tolist(), teacher[i].tolist(), 0.25, 1.0, skips[i]) for i in range(3)) / 3
    assert in_batch_kd_loss(student, teacher, mask=mask).item() == pytest.approx(expected, abs=1e-10)


def test_mask_gives_no_nan_and_no_gradient_to_masked_entries():
    student, teacher = random_scores(num_queries=2, num_negatives=1, seed=7)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    mask = torch.tensor([[False, True, False, True], [True, False, False, False]])
    loss = in_batch_kd_loss(student, teacher, mask=mask, ce_weight=1.0)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(student.grad).all() and torch.isfinite(teacher.grad).all()
    assert (student.grad[mask] == 0).all() and (teacher.grad[mask] == 0).all()


def test_labels_select_rows_of_a_larger_matrix():
    student, teacher = random_scores(num_queries=4, num_negatives=1, seed=8)
    full_rows = [naive_kl(student[i].tolist(), teacher[i].tolist(), 0.25, 1.0) for i in range(4)]
    got = in_batch_kd_loss(student[2:], teacher[2:], labels=torch.tensor([2, 3]))
    assert got.item() == pytest.approx((full_rows[2] + full_rows[3]) / 2, abs=1e-10)
    with_ce = in_batch_kd_loss(student[2:], teacher[2:], labels=torch.tensor([2, 3]), ce_weight=1.0)
    ce = F.cross_entropy(student[2:], torch.tensor([2, 3]))
    assert with_ce.item() == pytest.approx(got.item() + ce.item(), abs=1e-10)


def test_half_precision_scores_are_computed_in_float32():
    student, teacher = random_scores(seed=9, dtype=torch.float32)
    got = in_batch_kd_loss(student.bfloat16(), teacher.bfloat16())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, in_batch_kd_loss(student.bfloat16().float(), teacher.bfloat16().float()))


@pytest.mark.parametrize("with_mask", [False, True])
def test_gradcheck(with_mask):
    student, teacher = random_scores(num_queries=2, num_negatives=1, seed=10)
    mask = torch.tensor([[False, False, True, False], [False, False, False, True]]) if with_mask else None

    def loss(s, t):
        return in_batch_kd_loss(s, t, temperature=0.5, student_temperature=0.8, ce_weight=0.3, mask=mask)

    assert torch.autograd.gradcheck(loss, (student.requires_grad_(), teacher.requires_grad_()))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"teacher_scores": torch.zeros(2, 6)}, "^in_batch_kd_loss: .*same query x passage pairs"),
        ({"temperature": 0.0}, "^in_batch_kd_loss: temperature must be > 0"),
        ({"mask": torch.ones(2, 4, dtype=torch.bool)}, "excludes every column"),
        ({"mask": torch.eye(2, 4, dtype=torch.bool), "ce_weight": 1.0}, "positive column"),
        ({"mask": torch.zeros(2, 4)}, "bool tensor"),
        ({"labels": torch.tensor([0, 4])}, r"\[0, 4\)"),
    ],
)
def test_invalid_inputs_raise_clear_errors(kwargs, message):
    arguments = {"student_scores": torch.zeros(2, 4), "teacher_scores": torch.zeros(2, 4), **kwargs}
    with pytest.raises(ValueError, match=message):
        in_batch_kd_loss(**arguments)


def test_integer_scores_are_refused():
    with pytest.raises(TypeError, match="floating point"):
        in_batch_kd_loss(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4))


def test_module_equals_function_on_dot_products_and_uses_the_duplicate_mask():
    generator = torch.Generator().manual_seed(11)
    queries = torch.randn(2, 5, generator=generator, dtype=torch.float64)
    passages = torch.randn(4, 5, generator=generator, dtype=torch.float64)
    teacher = torch.randn(2, 4, generator=generator, dtype=torch.float64)
    ids = torch.tensor([7, 8, 9, 7])  # query 1's negative is query 0's positive
    loss_fn = InBatchKDLoss(temperature=0.5, ce_weight=0.2)
    mask = torch.tensor([[False, False, False, True], [False, False, False, True]])
    expected = in_batch_kd_loss(queries @ passages.T, teacher, temperature=0.5, ce_weight=0.2, mask=mask)
    torch.testing.assert_close(loss_fn(queries, passages, teacher, passage_ids=ids), expected)
    unmasked = in_batch_kd_loss(queries @ passages.T, teacher, temperature=0.5, ce_weight=0.2)
    torch.testing.assert_close(loss_fn(queries, passages, lambda: teacher), unmasked)
    assert "Lin" in loss_fn.citation and "2021" in loss_fn.citation
    assert loss_fn.get_config_dict()["temperature"] == 0.5


def test_module_checks_the_teacher_shape():
    with pytest.raises(ValueError, match=r"teacher_scores must be \[B_local, N\]"):
        InBatchKDLoss()(torch.randn(2, 4), torch.randn(4, 4), torch.randn(2, 8))


def test_module_teacher_gets_no_gradient():
    teacher = torch.randn(2, 4, requires_grad=True)
    queries = torch.randn(2, 3, requires_grad=True)
    InBatchKDLoss()(queries, torch.randn(4, 3), teacher).backward()
    assert teacher.grad is None and queries.grad is not None
