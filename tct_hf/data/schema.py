"""The training-example columns: the one definition every reader, builder and the collator follow.

A training example is ``{"query": str, "positive": str, "negatives": list[str]}``; sources that know ids add
``query_id``, ``positive_id``, ``negative_ids`` (`load_id_triples`, `build_training_examples`, mining), and a
collection with titles adds ``positive_title`` and ``negative_titles`` (the collator puts them before the text, as
Pyserini does). Column order is fixed: ids before their texts, titles last.

Example:
    >>> list(training_features(ids=True))
    ['query_id', 'query', 'positive_id', 'positive', 'negative_ids', 'negatives']
"""

from __future__ import annotations

from datasets import Features, List, Value

TEXT_COLUMNS = ("query", "positive", "negatives")
ID_COLUMNS = ("query_id", "positive_id", "negative_ids")
TITLE_COLUMNS = ("positive_title", "negative_titles")

_FEATURES = {
    "query_id": Value("string"),
    "query": Value("string"),
    "positive_id": Value("string"),
    "positive": Value("string"),
    "negative_ids": List(Value("string")),
    "negatives": List(Value("string")),
    "positive_title": Value("string"),
    "negative_titles": List(Value("string")),
}


def training_features(ids: bool = False, titles: bool = False) -> Features:
    """The `datasets.Features` of training examples, with the id and/or title columns."""
    names = set(TEXT_COLUMNS) | (set(ID_COLUMNS) if ids else set()) | (set(TITLE_COLUMNS) if titles else set())
    return Features({name: feature for name, feature in _FEATURES.items() if name in names})


TEXT_FEATURES = training_features()
ID_FEATURES = training_features(ids=True)
