"""The fingerprint of an encoder: what an index records about the model that built it, so that a search or a mining
with another model (same dimension, other weights or other conventions) is refused instead of returning noise.

``encoder_fingerprint(encoder)`` returns a JSON-ready dict:

- ``weights_sha256``: SHA-256 over every weight tensor that shapes the embeddings, in name order (name, dtype, shape
  and raw bytes, as loaded). BERT's pooler is left out: mean pooling never uses it, and a checkpoint without one gets
  a freshly random pooler at every load. The bytes are those of the loaded dtype, so the same checkpoint loaded in
  float32 and in bfloat16 has two fingerprints (``dtype`` tells which: load with the index's ``--dtype``);
- ``conventions``: how texts become vectors — for a tct_hf student the prefixes, lengths, pooling start,
  similarity and normalization of its config; for a sentence-transformers model its modules' configurations,
  prompts and similarity; both with a SHA-256 of the tokenizer's vocabulary;
- ``dtype``: the weights' dtype; ``fingerprint``: SHA-256 of the weights hash and the conventions together (the one
  value compared).

An encoder that is no torch module (e.g. a test stand-in with fixed vectors) has no fingerprint (``None``).

Example::

    encoder = load_encoder("castorini/tct_colbert-v2-hnp-msmarco")
    encoder_fingerprint(encoder)["fingerprint"]      # '3f0c…' (64 hex digits)
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["encoder_fingerprint", "fingerprints_match"]

# Config fields of a tct_hf student that decide how a text becomes a vector.
_TCT_CONVENTION_FIELDS = (
    "query_prefix",
    "passage_prefix",
    "query_augment_token",
    "query_max_length",
    "passage_max_length",
    "pooling_start",
    "similarity",
    "normalize",
)


def _torch_module(encoder: Any) -> Any:
    import torch

    if isinstance(encoder, torch.nn.Module):
        return encoder
    inner = getattr(encoder, "model", None)  # SentenceTransformerEncoder
    return inner if isinstance(inner, torch.nn.Module) else None


def _weights_sha256(module: Any) -> tuple[str, str]:
    import torch

    digest = hashlib.sha256()
    dtypes = set()
    for name, tensor in sorted(module.state_dict().items()):
        if "pooler." in name or not isinstance(tensor, torch.Tensor):
            continue
        tensor = tensor.detach().to("cpu").contiguous()
        dtypes.add(str(tensor.dtype).removeprefix("torch."))
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest(), ",".join(sorted(dtypes))


def _vocabulary_sha256(tokenizer: Any) -> str | None:
    if tokenizer is None or not hasattr(tokenizer, "get_vocab"):
        return None
    vocabulary = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(vocabulary, ensure_ascii=False).encode()).hexdigest()


def _conventions(encoder: Any, module: Any) -> dict:
    config = getattr(module, "config", None)
    if config is not None and hasattr(config, "pooling_start"):  # a TCTModel
        conventions = {"encoder": "tct", **{field: getattr(config, field, None) for field in _TCT_CONVENTION_FIELDS}}
        conventions["vocabulary_sha256"] = _vocabulary_sha256(getattr(module, "tokenizer", None))
        return conventions
    modules = {}
    for index, (name, child) in enumerate(getattr(module, "_modules", {}).items()):
        get_config = getattr(child, "get_config_dict", None)
        modules[f"{index}_{name}_{type(child).__name__}"] = get_config() if callable(get_config) else None
    return {
        "encoder": type(module).__name__,
        "modules": modules,
        "prompts": getattr(module, "prompts", None),
        "similarity": getattr(module, "similarity_fn_name", None),
        "max_seq_length": getattr(module, "max_seq_length", None),
        "vocabulary_sha256": _vocabulary_sha256(getattr(module, "tokenizer", None)),
    }


def encoder_fingerprint(encoder: Any) -> dict | None:
    """The fingerprint dict of ``encoder`` (see the module docstring), or None when it has no torch weights."""
    module = _torch_module(encoder)
    if module is None:
        return None
    weights, dtype = _weights_sha256(module)
    conventions = json.loads(json.dumps(_conventions(encoder, module), sort_keys=True, default=str))
    combined = hashlib.sha256(f"{weights}|{json.dumps(conventions, sort_keys=True)}".encode()).hexdigest()
    return {"fingerprint": combined, "weights_sha256": weights, "dtype": dtype, "conventions": conventions}


def fingerprints_match(recorded: dict, current: dict) -> bool:
    """Whether two fingerprint dicts name the same model (their ``fingerprint`` values are equal)."""
    return recorded.get("fingerprint") == current.get("fingerprint")
