"""Validation of the texts given to the student and the teacher: one home for both models.

Both travelling sets (``configuration_tct.py`` / ``modeling_tct.py`` and ``configuration_colbert.py`` /
``modeling_colbert.py``) import this file, so ``save_pretrained`` copies it next to either checkpoint: it is part of
both models' code, not of one model's.

This file imports only the standard library (it travels with checkpoints).
"""

from __future__ import annotations


def check_texts(texts: list[str], what: str) -> None:
    """Raise a ValueError naming the first bad item: the list itself, None, a non-string or a blank string.

    Example:
        >>> check_texts(["heat", ""], "queries")
        Traceback (most recent call last):
        ...
        ValueError: queries[1] is an empty string: remove it or replace it with real text.
    """
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise ValueError(
            f"{what} must be a list of strings, got {type(texts).__name__}: wrap a single text in a list."
        )
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{what}[{index}] must be a str, got {type(text).__name__} ({text!r}).")
        if not text.strip():
            raise ValueError(f"{what}[{index}] is an empty string: remove it or replace it with real text.")


def check_titles(titles: list[str], num_passages: int) -> None:
    """Raise a ValueError unless ``titles`` is a list of ``num_passages`` strings (``''`` = no title).

    Example:
        >>> check_titles(["Water", ""], 2)
        >>> check_titles(["Water"], 2)
        Traceback (most recent call last):
        ...
        ValueError: titles must be a list with one title per passage: got list of length 1 for 2 passages.
    """
    if isinstance(titles, str) or not isinstance(titles, (list, tuple)) or len(titles) != num_passages:
        length = len(titles) if hasattr(titles, "__len__") else "unknown"
        raise ValueError(
            f"titles must be a list with one title per passage: got {type(titles).__name__} "
            f"of length {length} for {num_passages} passages."
        )
    for index, title in enumerate(titles):
        if not isinstance(title, str):
            raise ValueError(f"titles[{index}] must be a str (use '' for no title), got {type(title).__name__}.")
