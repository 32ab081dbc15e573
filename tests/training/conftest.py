"""Tiny student/teacher pairs and a tiny training set for the trainer tests."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils import WORDS, write_tiny_bert  # noqa: E402

from tct_hf import ColBERTModel  # noqa: E402


def make_examples(count: int, num_negatives: int = 2, seed: int = 0) -> list[dict]:
    """Distinct queries whose positive repeats the query's words; negatives are random other words."""
    rng = random.Random(seed)
    examples = []
    for i in range(count):
        words = rng.sample(WORDS, 3)
        query = " ".join(words)
        positive = " ".join(words + rng.sample(WORDS, 4))
        negatives = [" ".join(rng.sample(WORDS, 7)) for _ in range(num_negatives)]
        examples.append({"query": f"{query} {i}", "positive": positive, "negatives": negatives})
    return examples


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """(student backbone dir with dropout, teacher backbone dir): two tiny random BERTs with a tokenizer."""
    root = tmp_path_factory.mktemp("tiny_models")
    student = write_tiny_bert(root / "student", seed=1, hidden_dropout_prob=0.1)
    backbone = write_tiny_bert(root / "teacher_backbone", seed=2)
    # A saved teacher (projection included), so that every load gives the same weights whatever the RNG state.
    torch.manual_seed(3)
    ColBERTModel.from_pretrained(backbone, convention="tct", dim=16).save_pretrained(root / "teacher")
    return student, root / "teacher"
