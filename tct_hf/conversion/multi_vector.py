"""sentence-transformers multi-vector checkpoints: a sentence-transformers 6 ``MultiVectorEncoder`` directory
(Transformer, Dense, optional MultiVectorMask and Normalize modules; prompts, ``query_expansion``,
``document_length``) or a PyLate one (a ``pylate`` Dense at ``1_Dense``; top-level ``query_prefix``,
``query_length``...; PyLate v3 normalized inline).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..configuration_colbert import CONVENTION_DEFAULTS
from .files import bert_config_fields, read_json, read_weights


def is_multi_vector_directory(directory: Path) -> bool:
    """True for a MultiVectorEncoder / PyLate directory; False for a dense SentenceTransformer (e.g. a saved TCT
    student), whose BERT then starts a new ColBERT like any plain BERT checkpoint."""
    directory = Path(directory)
    if not (directory / "modules.json").is_file():
        return False
    model_config_path = directory / "config_sentence_transformers.json"
    model_config = read_json(model_config_path) if model_config_path.is_file() else {}
    if model_config.get("model_type") in ("MultiVectorEncoder", "ColBERT"):
        return True
    return any(str(module.get("type", "")).startswith("pylate.") for module in read_json(directory / "modules.json"))


SENTENCE_TRANSFORMERS_DENSE = (
    "sentence_transformers.base.modules.dense.Dense",
    "sentence_transformers.models.Dense",
    "sentence_transformers.models.Dense.Dense",
    "pylate.models.Dense.Dense",
    "pylate.models.Dense",
)


def read_multi_vector_checkpoint(directory: Path) -> tuple[dict, dict[str, torch.Tensor], Path]:
    """``(ColBERTConfig values, state dict with bert.* and linear.*, tokenizer directory)`` of a
    sentence-transformers 6 ``MultiVectorEncoder`` or PyLate directory: Transformer, Dense projection, optional
    MultiVectorMask (skiplist) and Normalize modules; prompts and lengths from the JSON configs."""
    directory = Path(directory)
    modules = read_json(directory / "modules.json")
    model_config_path = directory / "config_sentence_transformers.json"
    model_config = read_json(model_config_path) if model_config_path.is_file() else {}
    model_type = model_config.get("model_type")
    is_pylate = model_type == "ColBERT" or any(str(m.get("type", "")).startswith("pylate.") for m in modules)
    if model_type not in ("MultiVectorEncoder", "ColBERT") and not is_pylate:
        raise OSError(
            f"{directory} is a sentence-transformers {model_type or 'SentenceTransformer'} directory, not a "
            "multi-vector (ColBERT) one: ColBERTModel needs a MultiVectorEncoder or PyLate checkpoint."
        )
    transformer_dir = dense_dir = None
    dense_config: dict = {}
    skiplist: list[str] | None = None
    normalize = model_type == "ColBERT"  # PyLate v3 saved [Transformer, Dense] and normalized inline
    for module in modules:
        kind, path = str(module.get("type", "")), directory / module.get("path", "")
        if kind.endswith("Transformer"):
            transformer_dir = path
        elif kind in SENTENCE_TRANSFORMERS_DENSE:
            if dense_dir is not None:
                raise OSError(f"{directory}: more than one Dense module; ColBERTModel supports one projection.")
            dense_dir, dense_config = path, read_json(path / "config.json")
        elif kind.endswith("MultiVectorMask"):
            mask_config = read_json(path / "config.json")
            if "document" not in (mask_config.get("skiplist_tasks") or ["document"]):
                raise OSError(f"{path}: a query-side skiplist is not supported by ColBERTModel.")
            if mask_config.get("keep_only_token_ids"):
                raise OSError(f"{path}: keep_only_token_ids is not supported by ColBERTModel.")
            skiplist = list(mask_config.get("skiplist_words") or [])
        elif kind.endswith("Normalize"):
            normalize = True
        else:
            raise OSError(f"{directory}/modules.json: module {kind!r} is not supported by ColBERTModel.")
    if transformer_dir is None or dense_dir is None:
        raise OSError(f"{directory}: a multi-vector checkpoint needs a Transformer and a Dense module.")
    activation = dense_config.get("activation_function", "torch.nn.modules.linear.Identity")
    if not activation.endswith("Identity"):
        raise OSError(f"{dense_dir}/config.json: activation {activation!r} is not supported (Identity only).")
    dense_weights = read_weights(dense_dir)
    transformer_config_path = transformer_dir / "sentence_bert_config.json"
    transformer_config = read_json(transformer_config_path) if transformer_config_path.is_file() else {}
    prompts = model_config.get("prompts") or {}
    query_prefix = prompts.get("query") or model_config.get("query_prefix") or ""
    passage_prefix = prompts.get("document") or model_config.get("document_prefix") or ""
    if is_pylate and skiplist is None:
        skiplist = model_config.get("skiplist_words", list(CONVENTION_DEFAULTS["stanford"]["skiplist_words"]))
    expansion = transformer_config.get("query_expansion")
    query_length = transformer_config.get("query_length") or model_config.get("query_length") or 32
    attend = model_config.get("attend_to_expansion_tokens", model_config.get("attend_to_mask_tokens", False))
    if expansion is not None:
        if expansion.get("strategy") != "fixed":
            raise OSError(
                f"{transformer_config_path}: query_expansion strategy {expansion.get('strategy')!r} "
                "is not supported (only 'fixed')."
            )
        query_length, attend = expansion["length"], bool(expansion.get("attend", False))
    passage_length = (
        transformer_config.get("document_length")
        or model_config.get("document_length")
        or transformer_config.get("max_seq_length")
        or 512
    )
    similarity = model_config.get("similarity_fn_name") or "maxsim"
    if similarity.lower() != "maxsim":
        raise OSError(f"{model_config_path}: similarity_fn_name {similarity!r} is not supported (maxsim only).")
    text_kwargs = (transformer_config.get("processing_kwargs") or {}).get("text") or {}
    values = {
        **bert_config_fields(transformer_dir),
        "convention": "stanford",
        "dim": int(dense_config.get("out_features", dense_weights["linear.weight"].shape[0])),
        "query_prefix": query_prefix,
        "passage_prefix": passage_prefix,
        "add_special_tokens": bool(text_kwargs.get("add_special_tokens", True)),
        "query_max_length": int(query_length),
        "passage_max_length": int(passage_length),
        "query_augment_token": (expansion or {}).get("token") or "[MASK]",
        "attend_to_mask_tokens": attend,
        "skip_positions": 0,
        # sentence-transformers registers markers only for legacy (PyLate prefix) saves; native ones keep the
        # tokenizer as saved.
        "register_marker_tokens": bool(model_config.get("query_prefix") or model_config.get("document_prefix")),
        "projection_bias": bool(dense_config.get("bias", "linear.bias" in dense_weights)),
        "normalize_queries": normalize,
        "normalize_passages": normalize,
        "skiplist_words": skiplist or [],
    }
    backbone = read_weights(transformer_dir)
    state_dict = {key if key.startswith("bert.") else f"bert.{key}": value for key, value in backbone.items()}
    state_dict.update({f"linear.{key.split('.')[-1]}": value for key, value in dense_weights.items()})
    return values, state_dict, transformer_dir
