"""Readers of foreign checkpoints: Stanford ColBERT, sentence-transformers multi-vector and PyLate directories,
and weights in any published format (safetensors, or ``.bin`` through torch's ``weights_only`` unpickler).

The modeling files keep the models; conversion lives here, like transformers' ``convert_*`` scripts beside
``modeling_*.py``. ``import tct_hf`` registers `read_foreign_checkpoint` with ``ColBERTModel`` (see
``ColBERTModel.register_checkpoint_reader``), so ``ColBERTModel.from_pretrained(stanford_dir)`` converts on load;
the modeling file itself never imports this package and stays loadable as remote code.

Example:
    >>> from tct_hf.conversion import read_foreign_checkpoint
    >>> converted = read_foreign_checkpoint("colbertv2.0")  # doctest: +SKIP
    >>> converted.config_values["passage_max_length"], sorted(converted.state_dict)[-1]  # doctest: +SKIP
    (300, 'linear.weight')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import torch

from .files import bert_config_fields, load_pickled_state_dict, read_json, read_weights
from .hub import foreign_hub_snapshot
from .multi_vector import is_multi_vector_directory, read_multi_vector_checkpoint
from .stanford import STANFORD_SETTINGS_DEFAULTS, is_stanford_checkpoint, read_stanford_checkpoint


class ConvertedCheckpoint(NamedTuple):
    """A foreign checkpoint in ``ColBERTModel``'s terms (``ColBERTModel.from_converted(*converted)``)."""

    config_values: dict
    state_dict: dict[str, torch.Tensor]
    tokenizer_directory: Path


def read_foreign_checkpoint(path: str | os.PathLike, **hub_kwargs) -> ConvertedCheckpoint | None:
    """The converted checkpoint of a Stanford, PyLate or sentence-transformers multi-vector directory or Hub
    repository; None for anything else (our own checkpoints, plain BERTs), which ``from_pretrained`` loads itself.

    ``hub_kwargs``: ``revision``, ``cache_dir``, ``token``, ``local_files_only`` for a Hub id (a foreign repository is
    downloaded as a snapshot; offline, the cached snapshot is used)."""
    directory = Path(path)
    if not directory.is_dir():
        directory = foreign_hub_snapshot(str(path), **hub_kwargs)
        if directory is None:
            return None
    if is_multi_vector_directory(directory):
        return ConvertedCheckpoint(*read_multi_vector_checkpoint(directory))
    if is_stanford_checkpoint(directory):
        return ConvertedCheckpoint(*read_stanford_checkpoint(directory))
    return None


__all__ = [
    "STANFORD_SETTINGS_DEFAULTS",
    "ConvertedCheckpoint",
    "bert_config_fields",
    "foreign_hub_snapshot",
    "is_multi_vector_directory",
    "is_stanford_checkpoint",
    "load_pickled_state_dict",
    "read_foreign_checkpoint",
    "read_json",
    "read_multi_vector_checkpoint",
    "read_stanford_checkpoint",
    "read_weights",
]
