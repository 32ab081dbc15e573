"""Reading the files of a checkpoint directory: JSON configs, BERT fields and weights in any published format.

Weights: ``model.safetensors`` (or its sharded index) is preferred; otherwise ``pytorch_model.bin`` (or its sharded
index) is read with torch's ``weights_only=True`` unpickler, which rebuilds tensors and plain containers only and
never runs code: a pickle that references anything else is refused with an OSError naming the file (the same
error as the models' own ``from_pretrained``).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import BertConfig

from ..loading_checks import unsafe_pickle_error

SAFETENSORS_FILE, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
PICKLE_FILE, PICKLE_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"


def read_json(path: Path) -> dict | list:
    """Parse a JSON file; an invalid one raises OSError naming the file and line."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise OSError(f"{path}:{error.lineno}: invalid JSON ({error.msg}).") from error
    except UnicodeDecodeError as error:
        raise OSError(f"{path}: not UTF-8 text ({error.reason}); is this a JSON config?") from error


def bert_config_fields(directory: Path) -> dict:
    """The BERT fields of ``directory/config.json`` (``architectures`` and every non-BERT key dropped)."""
    config_path = Path(directory) / "config.json"
    if not config_path.is_file():
        raise OSError(f"{directory} has no config.json for the BERT backbone.")
    values = read_json(config_path)
    bert_fields = set(BertConfig.__dataclass_fields__)
    return {key: value for key, value in values.items() if key in bert_fields and key != "architectures"}


def load_pickled_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """``torch.load(path, weights_only=True)``: tensors and containers only; anything else raises the OSError of
    ``loading_checks.unsafe_pickle_error`` (naming the file) and nothing in the file runs."""
    try:
        state_dict = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise unsafe_pickle_error(path, error) from error
    if not isinstance(state_dict, dict) or not all(isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise OSError(f"{path}: not a state dict (a mapping of names to tensors).")
    return state_dict


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint in ``directory``: safetensors when present, else ``.bin`` (weights only)."""
    directory = Path(directory)
    for single, index, load in (
        (SAFETENSORS_FILE, SAFETENSORS_INDEX, load_file),
        (PICKLE_FILE, PICKLE_INDEX, load_pickled_state_dict),
    ):
        if (directory / single).is_file():
            return load(directory / single)
        if (directory / index).is_file():
            state_dict = {}
            for shard in sorted(set(read_json(directory / index)["weight_map"].values())):
                state_dict.update(load(directory / shard))
            return state_dict
    raise OSError(f"{directory} has no model.safetensors nor pytorch_model.bin: not a checkpoint directory.")
