"""duplicate_passage_mask on hand cases and against a naive loop of the documented rule; column helpers."""

from __future__ import annotations

import pytest
import torch

from tct_hf.losses import (
    duplicate_passage_mask,
    global_layout,
    negative_columns,
    num_negatives_per_query,
    own_columns,
    positive_columns,
)

F_, T_ = False, True


def naive_mask(ids, num_queries, extra=None, rows=None):
    """The docstring's rule, one entry at a time."""
    rows = list(range(num_queries)) if rows is None else rows
    out = []
    for r, i in enumerate(rows):
        row = []
        for j, passage in enumerate(ids):
            same_as_positive = passage == ids[i]
            other_positive = extra is not None and passage in extra[r]
            later_duplicate = passage in ids[:j]
            row.append(j != i and (same_as_positive or other_positive or later_duplicate))
        out.append(row)
    return torch.tensor(out, dtype=torch.bool)


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        pytest.param([1, 2, 3, 4], [[F_, F_, F_, F_], [F_, F_, F_, F_]], id="no_duplicates"),
        pytest.param([5, 5, 7, 8], [[F_, T_, F_, F_], [T_, F_, F_, F_]], id="two_queries_share_a_positive"),
        pytest.param(
            [10, 11, 12, 10], [[F_, F_, F_, T_], [F_, F_, F_, T_]], id="query_1_negative_is_query_0_positive"
        ),
        pytest.param(
            [10, 11, 11, 13], [[F_, F_, T_, F_], [F_, F_, T_, F_]], id="query_0_negative_is_query_1_positive"
        ),
        pytest.param([1, 2, 9, 9], [[F_, F_, F_, T_], [F_, F_, F_, T_]], id="repeated_negative_counts_once"),
        pytest.param([1, 2, 1, 3], [[F_, F_, T_, F_], [F_, F_, T_, F_]], id="negative_identical_to_own_positive"),
    ],
)
def test_hand_cases(ids, expected):
    mask = duplicate_passage_mask(torch.tensor(ids), num_queries=2)
    assert mask.tolist() == expected


def test_other_query_negative_is_my_positive_with_two_negatives():
    # B=3, n_neg=2: columns 0-2 positives; query 0: 3, 4; query 1: 5, 6; query 2: 7, 8.
    # Query 2's second negative (column 8) is query 0's positive (id 100).
    ids = torch.tensor([100, 101, 102, 200, 201, 202, 203, 204, 100])
    mask = duplicate_passage_mask(ids, num_queries=3)
    assert mask[0].nonzero().flatten().tolist() == [8]  # not a negative of query 0
    assert mask[2].nonzero().flatten().tolist() == [8]  # query 2 sees passage 100 once, at column 0
    assert not mask[2, 0]
    assert mask[1].nonzero().flatten().tolist() == [8]


def test_extra_positive_ids_are_never_negatives():
    ids = torch.tensor([1, 2, 3, 4])
    mask = duplicate_passage_mask(ids, num_queries=2, extra_positive_ids=[[4], torch.tensor([], dtype=torch.long)])
    assert mask.tolist() == [[F_, F_, F_, T_], [F_, F_, F_, F_]]
    # An extra positive that is the query's own positive id changes nothing: the positive column is kept.
    assert not duplicate_passage_mask(ids, 2, extra_positive_ids=[[1], [2]]).any()


@pytest.mark.parametrize("seed", range(5))
def test_equals_naive_rule_on_random_batches_with_many_duplicates(seed):
    generator = torch.Generator().manual_seed(seed)
    num_queries, num_negatives = 4, 2
    ids = torch.randint(0, 7, (num_queries * (1 + num_negatives),), generator=generator)
    extra = [torch.randint(0, 7, (2,), generator=generator).tolist() for _ in range(num_queries)]
    got = duplicate_passage_mask(ids, num_queries, extra_positive_ids=extra)
    expected = naive_mask(ids.tolist(), num_queries, extra)
    assert torch.equal(got, expected)
    assert not got[torch.arange(num_queries), torch.arange(num_queries)].any()  # the positive is always kept
    # Among the kept columns of each row, every passage id appears once.
    for row in range(num_queries):
        kept = ids[~got[row]].tolist()
        assert len(kept) == len(set(kept))


def test_query_indices_select_rows():
    ids = torch.tensor([1, 2, 3, 1, 5, 6, 2, 3])  # B=4, one negative each
    full = duplicate_passage_mask(ids, 4)
    assert torch.equal(duplicate_passage_mask(ids, 4, query_indices=torch.tensor([2, 3])), full[2:])
    rows = duplicate_passage_mask(ids, 4, extra_positive_ids=[[5], [6]], query_indices=torch.tensor([2, 3]))
    assert torch.equal(rows, naive_mask(ids.tolist(), 4, [[5], [6]], rows=[2, 3]))


def test_global_layout_without_gathering():
    labels, num_queries, mask = global_layout(
        2, gather_across_devices=None, passage_ids=torch.tensor([10, 11, 12, 10])
    )
    assert labels.tolist() == [0, 1] and num_queries == 2
    assert mask.tolist() == [[F_, F_, F_, T_], [F_, F_, F_, T_]]
    assert global_layout(2, passage_ids=torch.tensor([10, 11, 12, 10]), mask_duplicates=False)[2] is None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: duplicate_passage_mask(torch.tensor([1, 2, 3]), 2), "N = B"),
        (lambda: duplicate_passage_mask(torch.tensor([1.0, 2.0]), 2), "integer tensor"),
        (lambda: duplicate_passage_mask(torch.tensor([1, 2]), 2, extra_positive_ids=[[1]]), "one sequence per"),
        (lambda: duplicate_passage_mask(torch.tensor([1, 2]), 2, query_indices=torch.tensor([2])), "query indices"),
    ],
)
def test_invalid_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_column_helpers_follow_the_convention():
    assert positive_columns(3).tolist() == [0, 1, 2]
    assert negative_columns(3, 2).tolist() == [[3, 4], [5, 6], [7, 8]]
    assert negative_columns(2, 0).shape == (2, 0)
    assert num_negatives_per_query(3, 9) == 2
    assert own_columns(torch.tensor([0, 2]), num_queries=3, num_passages=9).tolist() == [[0, 3, 4], [2, 7, 8]]
    with pytest.raises(ValueError, match="N = B"):
        num_negatives_per_query(3, 8)
