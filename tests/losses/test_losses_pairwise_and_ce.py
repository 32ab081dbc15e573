"""pairwise_kd_loss, in_batch_negatives_loss and colbert_finetune_loss against hand formulas and gradcheck."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tct_hf.losses import (
    ColBERTFinetuneLoss,
    InBatchNegativesLoss,
    PairwiseKDLoss,
    colbert_finetune_loss,
    in_batch_negatives_loss,
    pairwise_kd_loss,
)


def random_scores(num_queries=3, num_negatives=1, seed=0):
    generator = torch.Generator().manual_seed(seed)
    shape = (num_queries, num_queries * (1 + num_negatives))
    return torch.randn(shape, generator=generator, dtype=torch.float64) * 3, torch.randn(
        shape, generator=generator, dtype=torch.float64
    ) * 3


def hand_own_columns(num_queries, num_negatives):
    """Written out by hand: [positive i, B + i * n_neg + k] (negatives grouped per query)."""
    return [[i] + [num_queries + i * num_negatives + k for k in range(num_negatives)] for i in range(num_queries)]


# pairwise KD


def test_pairwise_with_one_negative_is_a_two_way_kl():
    student, teacher = random_scores(num_queries=3, num_negatives=1, seed=1)
    total = 0.0
    for i in range(3):
        p = torch.sigmoid((teacher[i, i] - teacher[i, 3 + i]) / 0.25)  # teacher prob of the positive
        q = torch.sigmoid(student[i, i] - student[i, 3 + i])
        total += p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))
    torch.testing.assert_close(pairwise_kd_loss(student, teacher), total / 3)


def test_pairwise_with_two_negatives_equals_f_kl_div_on_own_columns():
    student, teacher = random_scores(num_queries=3, num_negatives=2, seed=2)
    rows = torch.arange(3)[:, None]
    columns = torch.tensor(hand_own_columns(3, 2))
    s, t = student[rows, columns], teacher[rows, columns]
    expected = F.kl_div(F.log_softmax(s / 0.7, 1), F.softmax(t / 0.5, 1), reduction="batchmean")
    torch.testing.assert_close(pairwise_kd_loss(student, teacher, temperature=0.5, student_temperature=0.7), expected)


def test_pairwise_ignores_other_queries_passages():
    student, teacher = random_scores(num_queries=2, num_negatives=1, seed=3)
    changed = student.clone()
    changed[0, 1] += 10.0  # query 1's positive, seen by query 0: not in query 0's pair
    changed[1, 2] -= 10.0  # query 0's negative, seen by query 1
    torch.testing.assert_close(pairwise_kd_loss(changed, teacher), pairwise_kd_loss(student, teacher))


def test_pairwise_rows_of_a_gathered_matrix_use_global_columns():
    student, teacher = random_scores(num_queries=4, num_negatives=2, seed=4)
    full = [
        pairwise_kd_loss(student[i : i + 1], teacher[i : i + 1], labels=torch.tensor([i]), num_queries=4)
        for i in range(4)
    ]
    local = pairwise_kd_loss(student[2:], teacher[2:], labels=torch.tensor([2, 3]), num_queries=4)
    torch.testing.assert_close(local, (full[2] + full[3]) / 2)
    torch.testing.assert_close(sum(full) / 4, pairwise_kd_loss(student, teacher))


def test_pairwise_mask_drops_a_negative_identical_to_the_positive():
    student, teacher = random_scores(num_queries=2, num_negatives=2, seed=5)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 2] = True  # query 0's first negative
    s0 = student[0, [0, 3]]
    t0 = teacher[0, [0, 3]]
    row0 = F.kl_div(F.log_softmax(s0, 0), F.softmax(t0 / 0.25, 0), reduction="sum")
    s1, t1 = student[1, [1, 4, 5]], teacher[1, [1, 4, 5]]
    row1 = F.kl_div(F.log_softmax(s1, 0), F.softmax(t1 / 0.25, 0), reduction="sum")
    torch.testing.assert_close(pairwise_kd_loss(student, teacher, mask=mask), (row0 + row1) / 2)


# in-batch negatives


def test_in_batch_negatives_equals_cross_entropy_on_the_diagonal():
    student, _ = random_scores(num_queries=4, num_negatives=2, seed=6)
    torch.testing.assert_close(in_batch_negatives_loss(student), F.cross_entropy(student, torch.arange(4)))
    torch.testing.assert_close(
        in_batch_negatives_loss(student, temperature=0.05), F.cross_entropy(student / 0.05, torch.arange(4))
    )


def test_in_batch_negatives_by_hand_for_one_query():
    scores = torch.tensor([[2.0, 0.0, 1.0, -1.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    row0 = -(2.0 - torch.log(torch.exp(torch.tensor([2.0, 0.0, 1.0, -1.0], dtype=torch.float64)).sum()))
    row1 = torch.log(torch.tensor(4.0, dtype=torch.float64))
    torch.testing.assert_close(in_batch_negatives_loss(scores), (row0 + row1) / 2)


def test_in_batch_negatives_mask_equals_removing_the_column():
    student, _ = random_scores(num_queries=3, num_negatives=1, seed=7)
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[:, 3] = True
    keep = [0, 1, 2, 4, 5]
    torch.testing.assert_close(
        in_batch_negatives_loss(student, mask=mask), F.cross_entropy(student[:, keep], torch.arange(3))
    )


def test_in_batch_negatives_rejects_a_masked_positive():
    with pytest.raises(ValueError, match="positive column"):
        in_batch_negatives_loss(torch.zeros(2, 4), mask=torch.eye(2, 4, dtype=torch.bool))


# ColBERT fine-tuning


def test_colbert_own_negatives_with_one_negative_is_softplus_of_the_margin():
    scores, _ = random_scores(num_queries=3, num_negatives=1, seed=8)
    expected = torch.stack([F.softplus(scores[i, 3 + i] - scores[i, i]) for i in range(3)]).mean()
    torch.testing.assert_close(colbert_finetune_loss(scores, in_batch=False), expected)


def test_colbert_own_negatives_equals_cross_entropy_on_own_columns():
    scores, _ = random_scores(num_queries=3, num_negatives=2, seed=9)
    own = scores[torch.arange(3)[:, None], torch.tensor(hand_own_columns(3, 2))]
    torch.testing.assert_close(
        colbert_finetune_loss(scores, in_batch=False), F.cross_entropy(own, torch.zeros(3, dtype=torch.long))
    )


def test_colbert_in_batch_equals_cross_entropy_over_all_passages():
    scores, _ = random_scores(num_queries=3, num_negatives=2, seed=10)
    torch.testing.assert_close(colbert_finetune_loss(scores, in_batch=True), F.cross_entropy(scores, torch.arange(3)))


def test_colbert_own_negatives_with_labels_of_a_gathered_matrix():
    scores, _ = random_scores(num_queries=4, num_negatives=1, seed=11)
    local = colbert_finetune_loss(scores[2:], in_batch=False, labels=torch.tensor([2, 3]), num_queries=4)
    expected = (F.softplus(scores[2, 6] - scores[2, 2]) + F.softplus(scores[3, 7] - scores[3, 3])) / 2
    torch.testing.assert_close(local, expected)


# gradcheck, NaN-freedom and modules


MASK = torch.tensor([[False, True, False, False, True, False], [False, False, True, False, False, False]])


@pytest.mark.parametrize("mask", [None, MASK], ids=["no_mask", "mask"])
@pytest.mark.parametrize(
    "loss",
    [
        lambda s, t, m: pairwise_kd_loss(s, t, temperature=0.5, mask=m),
        lambda s, t, m: in_batch_negatives_loss(s, mask=m, temperature=0.7) + 0 * t.sum(),
        lambda s, t, m: colbert_finetune_loss(s, in_batch=True, mask=m) + 0 * t.sum(),
        lambda s, t, m: colbert_finetune_loss(s, in_batch=False, mask=m) + 0 * t.sum(),
    ],
    ids=["pairwise_kd", "in_batch_negatives", "colbert_in_batch", "colbert_own"],
)
def test_gradcheck_and_no_nan(loss, mask):
    student, teacher = random_scores(num_queries=2, num_negatives=2, seed=12)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s, t: loss(s, t, mask), (student, teacher))
    value = loss(student, teacher, mask)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(student.grad).all()
    if mask is not None:
        assert (student.grad[mask] == 0).all()


def test_modules_equal_their_functions_with_the_duplicate_mask():
    generator = torch.Generator().manual_seed(13)
    queries = torch.randn(2, 5, generator=generator, dtype=torch.float64)
    passages = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    teacher = torch.randn(2, 6, generator=generator, dtype=torch.float64)
    ids = torch.tensor([1, 2, 1, 3, 4, 4])  # query 0's first negative is its positive; query 1 repeats a negative
    mask = torch.tensor([[False, False, True, False, False, True], [False, False, True, False, False, True]])
    scores = queries @ passages.T
    torch.testing.assert_close(
        PairwiseKDLoss()(queries, passages, teacher, ids), pairwise_kd_loss(scores, teacher, mask=mask)
    )
    torch.testing.assert_close(
        InBatchNegativesLoss(temperature=0.5)(queries, passages, ids),
        in_batch_negatives_loss(scores, mask=mask, temperature=0.5),
    )
    torch.testing.assert_close(
        ColBERTFinetuneLoss(in_batch=False)(scores, ids), colbert_finetune_loss(scores, in_batch=False, mask=mask)
    )
    torch.testing.assert_close(
        ColBERTFinetuneLoss(mask_duplicates=False)(scores, ids), colbert_finetune_loss(scores, in_batch=True)
    )
    assert "Khattab" in ColBERTFinetuneLoss().citation and "Lin" in PairwiseKDLoss().citation
    assert InBatchNegativesLoss().get_config_dict()["temperature"] == 1.0


def test_colbert_module_checks_passage_ids_against_scores():
    with pytest.raises(ValueError, match="do not match"):
        ColBERTFinetuneLoss()(torch.randn(2, 4), passage_ids=torch.arange(6))
