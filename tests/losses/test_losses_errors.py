"""Every error raised by tct_hf.losses starts with the name of the class or function the user called."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import tct_hf.losses as losses

CASES = [
    ("in_batch_kd_loss", lambda: losses.in_batch_kd_loss(torch.zeros(2, 4), torch.zeros(2, 6))),
    ("in_batch_kd_loss", lambda: losses.in_batch_kd_loss(torch.zeros(2, 4), torch.zeros(2, 4), student_temperature=0)),
    ("InBatchKDLoss", lambda: losses.InBatchKDLoss(temperature=-1.0)),
    ("InBatchKDLoss", lambda: losses.InBatchKDLoss()(torch.zeros(2, 3), torch.zeros(4, 3), torch.zeros(2, 5))),
    ("pairwise_kd_loss", lambda: losses.pairwise_kd_loss(torch.zeros(2, 4), torch.zeros(3, 4))),
    ("pairwise_kd_loss", lambda: losses.pairwise_kd_loss(torch.zeros(2, 4), torch.zeros(2, 4), temperature=0)),
    ("PairwiseKDLoss", lambda: losses.PairwiseKDLoss(student_temperature=0.0)),
    ("PairwiseKDLoss", lambda: losses.PairwiseKDLoss()(torch.zeros(2, 3), torch.zeros(4, 3), torch.zeros(2, 3))),
    ("in_batch_negatives_loss", lambda: losses.in_batch_negatives_loss(torch.zeros(4))),
    ("InBatchNegativesLoss", lambda: losses.InBatchNegativesLoss(temperature=0.0)),
    ("colbert_finetune_loss", lambda: losses.colbert_finetune_loss(torch.zeros(2, 4), labels=torch.tensor([0, 9]))),
    ("ColBERTFinetuneLoss", lambda: losses.ColBERTFinetuneLoss()(torch.zeros(2, 4), passage_ids=torch.arange(6))),
    ("duplicate_passage_mask", lambda: losses.duplicate_passage_mask(torch.zeros(4), num_queries=2)),
    ("own_candidate_mask", lambda: losses.own_candidate_mask(torch.arange(4), 2, extra_positive_ids=[[1]])),
    ("num_negatives_per_query", lambda: losses.num_negatives_per_query(2, 5)),
    ("build_global_scores", lambda: losses.build_global_scores(torch.zeros(2, 3), torch.zeros(4, 5))),
    ("gather_padded", lambda: losses.gather_padded(torch.zeros(2, 3), dim=0)),
]


@pytest.mark.parametrize(("owner", "call"), CASES, ids=[f"{owner}-{i}" for i, (owner, _) in enumerate(CASES)])
def test_error_names_the_class_or_function(owner, call):
    with pytest.raises((ValueError, TypeError)) as raised:
        call()
    assert str(raised.value).startswith(f"{owner}: "), str(raised.value)


def test_no_error_message_in_losses_names_a_file():
    """String constants in raise statements of tct_hf/losses/*.py hold no ``.py`` path."""
    offenders = []
    for path in Path(losses.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise):
                for constant in ast.walk(node):
                    if isinstance(constant, ast.Constant) and isinstance(constant.value, str):
                        if ".py" in constant.value or "tct_hf/" in constant.value:
                            offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, offenders
