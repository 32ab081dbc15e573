"""The `>>>` examples in the losses' docstrings run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

MODULES = [
    "tct_hf.losses.columns",
    "tct_hf.losses.masking",
    "tct_hf.losses.in_batch_kd",
    "tct_hf.losses.pairwise_kd",
    "tct_hf.losses.in_batch_negatives",
    "tct_hf.losses.colbert_finetune",
    "tct_hf.losses.logits",
    "tct_hf.losses.gradient_cache",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs={"torch": torch}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0
    # Every docstring with an example shows a result, not only calls that do not raise.
    silent = [
        test.name
        for test in doctest.DocTestFinder().find(module)
        if test.examples and not any(example.want.strip() for example in test.examples)
    ]
    assert not silent, f"examples that print nothing to check: {silent}"
