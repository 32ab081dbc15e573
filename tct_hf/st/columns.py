"""tct_hf's training examples as sentence-transformers dataset columns.

tct_hf's examples (`tct_hf.data.build_training_examples`, mined negatives, text triples) hold ``query``,
``positive`` and a list ``negatives``; sentence-transformers' losses read columns by position: (query, positive,
negative_1, ..., negative_n). `to_sentence_transformers_columns` keeps the first ``num_negatives`` negatives of
each example in order and drops every other column (ids would otherwise be tokenized as text).

Example:
    >>> from datasets import Dataset
    >>> rows = Dataset.from_list([{"query": "q", "positive": "p", "negatives": ["n1", "n2"], "query_id": "1"}])
    >>> to_sentence_transformers_columns(rows, num_negatives=1)[0]
    {'query': 'q', 'positive': 'p', 'negative_1': 'n1'}
"""

from __future__ import annotations

from datasets import Dataset

__all__ = ["to_sentence_transformers_columns"]


def to_sentence_transformers_columns(examples: Dataset, num_negatives: int = 1) -> Dataset:
    """``(query, positive, negative_1 .. negative_{num_negatives})`` columns from ``query, positive, negatives``."""
    missing = {"query", "positive", "negatives"} - set(examples.column_names)
    if missing:
        raise ValueError(
            f"to_sentence_transformers_columns: the examples lack the column(s) {sorted(missing)}; expected query, "
            "positive and "
            f"negatives (a list), got {examples.column_names}."
        )
    if num_negatives < 0:
        raise ValueError(f"to_sentence_transformers_columns: num_negatives must be >= 0, got {num_negatives}.")

    def columns(row: dict) -> dict:
        if len(row["negatives"]) < num_negatives:
            raise ValueError(
                f"to_sentence_transformers_columns: query {row['query']!r} has {len(row['negatives'])} negatives, "
                "fewer than "
                f"num_negatives={num_negatives}."
            )
        out = {"query": row["query"], "positive": row["positive"]}
        out.update({f"negative_{k + 1}": row["negatives"][k] for k in range(num_negatives)})
        return out

    return examples.map(columns, remove_columns=examples.column_names, desc="sentence-transformers columns")
