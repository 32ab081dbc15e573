"""How each column's raw texts reach `InBatchKDLoss` through sentence-transformers' own collator.

`SentenceTransformerTrainer` builds its collator with ``preprocess_fn=model.preprocess`` (the attribute as it is
when the trainer is built), calls it once per text column with the raw strings (the prompt passed separately) and
keeps every key it returns as ``{column}_{key}``; `collect_features` then hands the loss ``features[i][key]``. An
in-batch KD teacher must read the exact texts with its own tokenizer (never a decode of the student's ids), so
`keep_texts(model)`, called by the loss's constructor (which runs before the trainer's), makes the student's
``preprocess`` also return the raw strings under ``"text"``. The loss pops them; everywhere else (``model.encode``,
evaluators, another loss) a forward pre-hook drops them, so the student's modules never receive them and its
outputs stay exactly what they were. Nothing of this is saved: ``save_pretrained`` writes modules and weights only.
"""

from __future__ import annotations

import types
from collections.abc import Callable, MutableMapping
from typing import Any

from torch import nn

__all__ = ["TEXT_KEY", "PreprocessWithTexts", "keep_texts", "with_texts"]

TEXT_KEY = "text"


class PreprocessWithTexts:
    """A ``preprocess`` callable whose output also holds the inputs under ``"text"`` when they are all strings.

    A class rather than a closure: DataLoader workers pickle the collator that holds it. The wrapped callable is
    ``__wrapped__`` (so `inspect.signature` shows the original's).
    """

    def __init__(self, preprocess: Callable[..., Any]) -> None:
        self.__wrapped__ = preprocess

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        features = self.__wrapped__(inputs, *args, **kwargs)
        # Pairs, images or messages have no single text for the teacher: the loss then says the columns must be text.
        if inputs and all(isinstance(text, str) for text in inputs):
            features[TEXT_KEY] = list(inputs)  # in place: keeps the original's type (a BatchEncoding)
        return features

    def __reduce__(self) -> tuple:
        # A bound method pickles as getattr(instance, "preprocess"), which on the restored instance would find this
        # wrapper again (and call itself): pickle the method's function and instance instead.
        wrapped = self.__wrapped__
        if isinstance(wrapped, types.MethodType):
            return _rebound, (wrapped.__func__, wrapped.__self__)
        return type(self), (wrapped,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__wrapped__!r})"


def _rebound(function: Callable[..., Any], instance: Any) -> PreprocessWithTexts:
    return PreprocessWithTexts(types.MethodType(function, instance))


def with_texts(preprocess: Callable[..., Any]) -> PreprocessWithTexts:
    """``preprocess`` wrapped by `PreprocessWithTexts`, never twice."""
    return preprocess if isinstance(preprocess, PreprocessWithTexts) else PreprocessWithTexts(preprocess)


def drop_texts(module: nn.Module, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook: removes the texts from the features before the student's modules see them (a Transformer
    over a model whose ``forward`` takes ``**kwargs`` would pass them on, and ``encode`` would return them)."""
    features = args[0] if args else kwargs.get("input")
    if isinstance(features, MutableMapping):  # a dict or a BatchEncoding (a UserDict)
        features.pop(TEXT_KEY, None)


def keep_texts(model: nn.Module) -> None:
    """Make ``model.preprocess`` return the raw texts too (an instance attribute over the class's method), and
    drop them before ``model``'s forward. Idempotent; the original stays ``model.preprocess.__wrapped__``."""
    if isinstance(model.__dict__.get("preprocess"), PreprocessWithTexts):
        return
    model.preprocess = PreprocessWithTexts(model.preprocess)
    model.register_forward_pre_hook(drop_texts, with_kwargs=True)
