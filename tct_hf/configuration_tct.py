"""Configuration of the TCT-ColBERT student: a BERT bi-encoder with Pyserini's input conventions.

The defaults reproduce Pyserini's TCT-ColBERT encoders (`pyserini/encode/_tct_colbert.py`), so the published
castorini/tct_colbert-* checkpoints give Pyserini's vectors:

- passage text  ``"[CLS] [D] " + text`` (or ``"[CLS] [D] " + title + " " + text``), tokenized with
  ``add_special_tokens=False``, truncated to ``passage_max_length`` (512) tokens, padded to the longest;
  embedding = masked mean of ``last_hidden_state[:, pooling_start:]`` (``pooling_start`` = 4);
- query text    ``"[CLS] [Q] " + query + "[MASK]" * query_max_length``, ``add_special_tokens=False``, truncated to
  ``query_max_length`` (36) tokens; embedding = mean of ``last_hidden_state[:, 4:]`` (the [MASK] positions are
  attended and averaged);
- similarity = dot product of the raw (not normalized) embeddings.

``model_type`` stays ``"bert"`` on purpose: a saved student loads as a plain ``BertModel`` in every BERT loader
(sentence-transformers without ``trust_remote_code``, Pyserini), and as ``TCTModel`` with ``trust_remote_code=True``.

This file imports only transformers and ``text_inputs.py`` (both are copied next to checkpoints for
``trust_remote_code``).
"""

from __future__ import annotations

from transformers import BertConfig

from .text_inputs import check_texts, check_titles

TCT_SIMILARITIES = ("dot",)


class TCTConfig(BertConfig):
    r"""BERT configuration plus the TCT-ColBERT input conventions.

    All BERT fields (``hidden_size``, ``num_hidden_layers``...) are inherited from ``BertConfig``.

    Args:
        query_prefix (`str`, defaults to `"[CLS] [Q] "`): text put before every query. It includes [CLS] because
            the text is tokenized with ``add_special_tokens=False``.
        passage_prefix (`str`, defaults to `"[CLS] [D] "`): text put before every passage (before the title when
            titles are given: ``prefix + title + " " + text``).
        query_augment_token (`str`, defaults to `"[MASK]"`): token appended ``query_max_length`` times to every
            query before truncation (ColBERT's query augmentation); the augmented positions are attended.
        query_max_length (`int`, defaults to 36): total query length in tokens, prefix included (the paper's 32 + 4).
        passage_max_length (`int`, defaults to 512): maximum total passage length in tokens, prefix included.
        pooling_start (`int`, defaults to 4): number of leading positions left out of the mean (the prefix's tokens:
            ``[CLS] [Q] `` is ``[CLS]``, ``[``, ``q``, ``]`` with an uncased BERT vocabulary).
        similarity (`str`, defaults to `"dot"`): similarity of query and passage embeddings (only ``"dot"``).
        normalize (`bool`, defaults to `False`): L2-normalize embeddings (TCT-ColBERT does not).

    Example:
        >>> config = TCTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
        >>> config.format_queries(["what is heat"])
        ['[CLS] [Q] what is heat[MASK][MASK]...']  # doctest: +SKIP
    """

    model_type = "bert"

    query_prefix: str = "[CLS] [Q] "
    passage_prefix: str = "[CLS] [D] "
    query_augment_token: str = "[MASK]"
    query_max_length: int = 36
    passage_max_length: int = 512
    pooling_start: int = 4
    similarity: str = "dot"
    normalize: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        for name in ("query_max_length", "passage_max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"TCTConfig.{name} must be a positive int, got {value!r}.")
        if not isinstance(self.pooling_start, int) or self.pooling_start < 0:
            raise ValueError(f"TCTConfig.pooling_start must be an int >= 0, got {self.pooling_start!r}.")
        for name in ("query_max_length", "passage_max_length"):
            if getattr(self, name) <= self.pooling_start:
                raise ValueError(
                    f"TCTConfig.{name}={getattr(self, name)} leaves no position to pool after "
                    f"pooling_start={self.pooling_start}: make it larger than pooling_start."
                )
        if self.similarity not in TCT_SIMILARITIES:
            raise ValueError(f"TCTConfig.similarity must be one of {TCT_SIMILARITIES}, got {self.similarity!r}.")

    def format_queries(self, queries: list[str], augment_length: int | None = None) -> list[str]:
        """Return ``query_prefix + query + query_augment_token * L`` for every query, ``L = augment_length`` or
        ``query_max_length`` (the tokenizer then truncates to the query length).

        Example:
            >>> TCTConfig(query_max_length=6).format_queries(["heat"])
            ['[CLS] [Q] heat[MASK][MASK][MASK][MASK][MASK][MASK]']
        """
        check_texts(queries, "queries")
        augmentation = self.query_augment_token * (self.query_max_length if augment_length is None else augment_length)
        return [f"{self.query_prefix}{query}{augmentation}" for query in queries]

    def format_passages(self, passages: list[str], titles: list[str] | None = None) -> list[str]:
        """Return ``passage_prefix + text`` (or ``passage_prefix + title + " " + text``) for every passage.

        Example:
            >>> TCTConfig().format_passages(["water boils"], titles=["heat"])
            ['[CLS] [D] heat water boils']
        """
        check_texts(passages, "passages")
        if titles is None:
            return [f"{self.passage_prefix}{passage}" for passage in passages]
        check_titles(titles, len(passages))
        return [
            f"{self.passage_prefix}{title} {passage}" if title else f"{self.passage_prefix}{passage}"
            for title, passage in zip(titles, passages)
        ]
