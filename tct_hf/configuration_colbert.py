"""Configuration of the ColBERT teacher: BERT + a linear projection per token, late-interaction (MaxSim) scoring.

    score(q, d) = sum_{i in query tokens} max_{j in passage tokens} E_q[i] . E_d[j]

Two conventions pick the defaults of every other field (each field can still be set explicitly):

``"tct"`` (the TCT-ColBERT paper's TensorFlow teacher, castorini/tct_colbert ``train/model_fn.py``)
    literal text markers ``"[CLS] [Q] "`` / ``"[CLS] [D] "`` tokenized with ``add_special_tokens=False``, queries
    padded with [MASK] to 36 tokens (attended), projection with bias, the first 4 positions (the marker) dropped
    on both sides, query tokens not normalized, passage tokens L2-normalized, padded passage positions masked.
``"stanford"`` (Stanford ColBERT v1/v2, ``colbert/modeling/colbert.py``)
    ``[CLS] [unused0] query [SEP] [MASK]...`` (32 tokens, [MASK]s not attended but scored) and
    ``[CLS] [unused1] passage [SEP]`` (at most 180 tokens; 220 for v2 via ``artifact.metadata``), projection without
    bias, both sides L2-normalized, punctuation tokens of passages skipped (``skiplist_words``).

The marker of the Stanford convention is written as the text prompt ``"[unused0] "``; the model registers it as a
special token of the tokenizer, so it stays one token and the result equals Stanford's token insertion.

This file imports only transformers and the standard library (it is copied next to checkpoints).
"""

from __future__ import annotations

import string

from transformers import BertConfig

COLBERT_CONVENTIONS = ("tct", "stanford")
COLBERT_SIMILARITIES = ("cosine", "dot")

CONVENTION_DEFAULTS: dict[str, dict] = {
    "tct": {
        "query_prefix": "[CLS] [Q] ",
        "passage_prefix": "[CLS] [D] ",
        "add_special_tokens": False,
        "register_marker_tokens": False,
        "query_max_length": 36,
        "passage_max_length": 512,
        "attend_to_mask_tokens": True,
        "skip_positions": 4,
        "projection_bias": True,
        "normalize_queries": False,
        "normalize_passages": True,
        "skiplist_words": [],
    },
    "stanford": {
        "query_prefix": "[unused0] ",
        "passage_prefix": "[unused1] ",
        "add_special_tokens": True,
        "register_marker_tokens": True,
        "query_max_length": 32,
        "passage_max_length": 180,
        "attend_to_mask_tokens": False,
        "skip_positions": 0,
        "projection_bias": False,
        "normalize_queries": True,
        "normalize_passages": True,
        "skiplist_words": list(string.punctuation),
    },
}


class ColBERTConfig(BertConfig):
    r"""BERT configuration plus ColBERT's projection, input and scoring conventions.

    Fields left at ``None`` take the value of ``convention`` (see the module docstring); a saved config holds
    every value explicitly.

    Args:
        convention (`str`, defaults to `"tct"`): ``"tct"`` or ``"stanford"``, the source of the defaults below.
        dim (`int`, defaults to 128): size of the projected token vectors.
        query_prefix / passage_prefix (`str`): text put before every query / passage (a title goes between the
            prefix and the passage: ``prefix + title + " " + text``).
        add_special_tokens (`bool`): let the tokenizer add [CLS] ... [SEP] (Stanford) or not (TCT's prefixes
            already hold [CLS]).
        register_marker_tokens (`bool`): register the first word of each prefix (e.g. ``[unused0]``) as a special
            token of the tokenizer when the vocabulary has it, so it stays one token (Stanford's token insertion).
        query_max_length (`int`): every query is [MASK]-padded (query augmentation) or truncated to exactly this
            many tokens, markers included.
        passage_max_length (`int`): maximum passage length in tokens, markers included.
        query_augment_token (`str`, defaults to `"[MASK]"`): the augmentation token.
        attend_to_mask_tokens (`bool`): whether BERT attends to the augmentation tokens (they are scored either way).
        skip_positions (`int`): leading positions excluded from scoring on both sides (TCT: the 4 marker tokens).
        projection_bias (`bool`): bias in the ``Linear(hidden_size, dim)`` projection.
        normalize_queries / normalize_passages (`bool`): L2-normalize the projected token vectors.
        skiplist_words (`list[str]`): passage tokens excluded from scoring (Stanford: the punctuation characters).
        similarity (`str`, defaults to `"cosine"`): token similarity; ``"cosine"`` and ``"dot"`` both mean the dot
            product of the (normalized as configured) vectors. Stanford's ``"l2"`` is not supported.

    Example:
        >>> config = ColBERTConfig(convention="stanford", hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
        >>> config.query_prefix, config.query_max_length, config.projection_bias
        ('[unused0] ', 32, False)
    """

    model_type = "tct_hf_colbert"

    convention: str = "tct"
    dim: int = 128
    query_prefix: str | None = None
    passage_prefix: str | None = None
    add_special_tokens: bool | None = None
    register_marker_tokens: bool | None = None
    query_max_length: int | None = None
    passage_max_length: int | None = None
    query_augment_token: str = "[MASK]"
    attend_to_mask_tokens: bool | None = None
    skip_positions: int | None = None
    projection_bias: bool | None = None
    normalize_queries: bool | None = None
    normalize_passages: bool | None = None
    skiplist_words: list[str] | None = None
    similarity: str = "cosine"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.convention not in COLBERT_CONVENTIONS:
            raise ValueError(
                f"ColBERTConfig.convention must be one of {COLBERT_CONVENTIONS}, got {self.convention!r}."
            )
        for name, value in CONVENTION_DEFAULTS[self.convention].items():
            if getattr(self, name) is None:
                setattr(self, name, list(value) if isinstance(value, list) else value)
        for name in ("dim", "query_max_length", "passage_max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ColBERTConfig.{name} must be a positive int, got {value!r}.")
        if not isinstance(self.skip_positions, int) or self.skip_positions < 0:
            raise ValueError(f"ColBERTConfig.skip_positions must be an int >= 0, got {self.skip_positions!r}.")
        for name in ("query_max_length", "passage_max_length"):
            if getattr(self, name) <= self.skip_positions:
                raise ValueError(
                    f"ColBERTConfig.{name}={getattr(self, name)} leaves no token to score after "
                    f"skip_positions={self.skip_positions}."
                )
        if self.similarity not in COLBERT_SIMILARITIES:
            raise ValueError(
                f"ColBERTConfig.similarity must be one of {COLBERT_SIMILARITIES}, got {self.similarity!r} "
                "(Stanford's 'l2' similarity is not supported)."
            )
        if not isinstance(self.skiplist_words, list) or not all(isinstance(w, str) for w in self.skiplist_words):
            raise ValueError(f"ColBERTConfig.skiplist_words must be a list of str, got {self.skiplist_words!r}.")
