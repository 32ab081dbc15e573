"""Stanford ColBERT checkpoints (stanford-futuredata/ColBERT): ``config.json`` with ``architectures:
["HF_ColBERT"]``, weights ``bert.*`` + a root ``linear.weight`` (no bias), settings in ``artifact.metadata``.

A setting missing from ``artifact.metadata`` (or a checkpoint without the file) takes Stanford's own default,
``STANFORD_SETTINGS_DEFAULTS``, read from ``colbert/infra/config/settings.py``; the projection size always comes
from the ``linear.weight`` tensor, which is what Stanford's code loads.
"""

from __future__ import annotations

from pathlib import Path

from ..configuration_colbert import CONVENTION_DEFAULTS
from .files import bert_config_fields, read_json, read_weights

# colbert/infra/config/settings.py: DocSettings (dim, doc_maxlen, mask_punctuation), QuerySettings (query_maxlen,
# attend_to_mask_tokens, interaction), TrainingSettings (similarity), TokenizerSettings (query/doc_token_id).
STANFORD_SETTINGS_DEFAULTS = {
    "dim": 128,
    "doc_maxlen": 220,
    "mask_punctuation": True,
    "query_maxlen": 32,
    "attend_to_mask_tokens": False,
    "interaction": "colbert",
    "similarity": "cosine",
    "query_token_id": "[unused0]",
    "doc_token_id": "[unused1]",
}


def is_stanford_checkpoint(directory: Path) -> bool:
    config_path = Path(directory) / "config.json"
    return config_path.is_file() and "HF_ColBERT" in (read_json(config_path).get("architectures") or [])


def read_stanford_checkpoint(directory: Path) -> tuple[dict, dict, Path]:
    """``(ColBERTConfig values, state dict with bert.* and linear.weight, tokenizer directory)``."""
    directory = Path(directory)
    weights = read_weights(directory)
    if "linear.weight" not in weights:
        raise OSError(f"{directory}: a Stanford ColBERT checkpoint needs a root 'linear.weight' tensor.")
    metadata_path = directory / "artifact.metadata"
    metadata = read_json(metadata_path) if metadata_path.is_file() else {}
    settings = {
        **STANFORD_SETTINGS_DEFAULTS,
        **{key: value for key, value in metadata.items() if key in STANFORD_SETTINGS_DEFAULTS and value is not None},
    }
    if settings["interaction"] != "colbert":
        raise OSError(
            f"{metadata_path}: interaction {settings['interaction']!r} is not supported (ColBERT's MaxSim only)."
        )
    dim = int(weights["linear.weight"].shape[0])
    if "dim" in metadata and int(metadata["dim"]) != dim:
        raise OSError(f"{metadata_path}: dim={metadata['dim']} but linear.weight has {dim} outputs.")
    values = {
        **bert_config_fields(directory),
        **CONVENTION_DEFAULTS["stanford"],
        "convention": "stanford",
        "dim": dim,
        "query_max_length": int(settings["query_maxlen"]),
        "passage_max_length": int(settings["doc_maxlen"]),
        "attend_to_mask_tokens": bool(settings["attend_to_mask_tokens"]),
        "similarity": settings["similarity"],
        "query_prefix": f"{settings['query_token_id']} ",
        "passage_prefix": f"{settings['doc_token_id']} ",
    }
    if not settings["mask_punctuation"]:
        values["skiplist_words"] = []
    state_dict = {key: value for key, value in weights.items() if key.startswith(("bert.", "linear."))}
    if not any(key.startswith("bert.") for key in state_dict):
        state_dict.update({f"bert.{key}": value for key, value in weights.items() if key != "linear.weight"})
    return values, state_dict, directory
