"""`TCTCollator`: a list of training examples → the tensors of one in-batch KD step.

Passage order (the losses' column convention, `tct_hf/losses/columns.py`): the B positives first (passage `i` is
query `i`'s positive), then the negatives grouped per query: negative `k` of query `i` is passage
`B + i * num_negatives + k`, so `N = B * (1 + num_negatives)`.

Lengths: `query_max_length` / `passage_max_length` count the text tokens only (the paper's 32 / 150); each model's
prefix is added: total = length + `config.pooling_start` (student: 32 + 4 = 36 and 150 + 4 = 154 by default;
the teacher uses its own config's prefix length and its own tokenization conventions).

Negatives: an example with more negatives than `num_negatives` gets `num_negatives` of them drawn without
replacement by `random.Random(h)`, `h` = a blake2b hash of (seed, epoch, query, positive). The draw is a pure
function of the example, so DataLoader workers, processes and a resumed run draw the same negatives; call
`set_epoch(e)` to draw new ones each epoch. Fewer negatives than `num_negatives` raises a `ValueError`.

`passage_ids[j]` = the first 8 bytes of blake2b(title + "\\x1f" + text) as a non-negative int64 (63 bits):
identical passages get identical ids, for `tct_hf.losses.duplicate_passage_mask`.

Example:
    >>> collator = TCTCollator(student, teacher, query_max_length=32, passage_max_length=150)    # doctest: +SKIP
    >>> batch = collator([{"query": "q", "positive": "p", "negatives": ["n"]}])                  # doctest: +SKIP
    >>> batch["passage_input_ids"].shape[0]                                                       # doctest: +SKIP
    2

Use it with `TrainingArguments(remove_unused_columns=False)` so that Trainer keeps the text columns.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

PASSAGE_ID_MASK = (1 << 63) - 1


def passage_id(text: str, title: str | None = None) -> int:
    """Stable 63-bit content hash of a passage (same text and title ⇒ same id, across processes and runs).

    >>> passage_id("a") == passage_id("a") != passage_id("b")
    True
    """
    content = text if not title else f"{title}\x1f{text}"
    digest = hashlib.blake2b(content.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & PASSAGE_ID_MASK


def prefix_length(model: Any) -> int:
    """Prefix tokens the model puts before the text: `config.pooling_start` (TCTModel) or `config.skip_positions`
    (ColBERTModel: 4 with the TCT convention, 0 with Stanford's, whose lengths count its markers)."""
    config = model.config
    for name in ("pooling_start", "skip_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise ValueError(
        f"{type(model).__name__}.config has neither pooling_start nor skip_positions: cannot add its prefix length"
    )


@dataclass
class TCTCollator:
    """Collate examples `{"query", "positive", "negatives": [...]}` (optional `positive_title`, `negative_titles`)
    into `query_*`, `passage_*`, `passage_ids` and, with a teacher, `teacher_query_*`, `teacher_passage_*`.

    Args:
        student: a model with `tokenize_queries(texts, max_length)` and `tokenize_passages(texts, titles,
            max_length)` (a `TCTModel` with its tokenizer), or None to fine-tune the teacher alone.
        teacher: optional, the same interface with its own conventions (a `ColBERTModel`).
        query_max_length / passage_max_length: text tokens, prefix excluded (the paper's 32 / 150).
        num_negatives: negatives per query in the batch (0 = positives only).
        seed: seed of the negative draw (see the module docstring).
    """

    student: Any
    teacher: Any = None
    query_max_length: int = 32
    passage_max_length: int = 150
    num_negatives: int = 1
    seed: int = 0
    epoch: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.student is None and self.teacher is None:
            raise ValueError("TCTCollator needs a student, a teacher (teacher fine-tuning) or both")
        for name in ("query_max_length", "passage_max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int (text tokens, prefix excluded), got {value!r}")
        if not isinstance(self.num_negatives, int) or self.num_negatives < 0:
            raise ValueError(f"num_negatives must be an int >= 0, got {self.num_negatives!r}")

    @classmethod
    def from_training_args(cls, args: Any, student: Any = None, teacher: Any = None) -> TCTCollator:
        """The collator matching training arguments (`TCTTrainingArguments` or `ColBERTTrainingArguments`): their
        `query_max_length`, `passage_max_length`, `num_negatives` and `seed`."""
        return cls(
            student,
            teacher,
            query_max_length=args.query_max_length,
            passage_max_length=args.passage_max_length,
            num_negatives=args.num_negatives,
            seed=args.seed,
        )

    def set_epoch(self, epoch: int) -> None:
        """Draw a new selection of negatives (for examples with more than `num_negatives`) in this epoch."""
        self.epoch = int(epoch)

    def select_negatives(self, example: dict, position: int) -> tuple[list[str], list[str] | None]:
        """The example's `num_negatives` negatives (and their titles, if given), drawn as documented."""
        negatives = list(example.get("negatives") or [])
        titles = example.get("negative_titles")
        if len(negatives) < self.num_negatives:
            raise ValueError(
                f"example {position} of the batch (query {example.get('query')!r:.60}) has {len(negatives)} "
                f"negatives, the collator needs num_negatives={self.num_negatives}; filter such examples or lower "
                f"num_negatives"
            )
        indices = list(range(len(negatives)))
        if len(negatives) > self.num_negatives:
            key = f"{self.seed}\x1f{self.epoch}\x1f{example['query']}\x1f{example['positive']}".encode()
            draw = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
            indices = random.Random(draw).sample(indices, self.num_negatives)
        return [negatives[i] for i in indices], ([titles[i] for i in indices] if titles is not None else None)

    def passages_in_loss_order(self, examples: Sequence[dict]) -> tuple[list[str], list[str] | None]:
        """Texts (and titles, when every example has them) of `[positives, negatives of query 0, of query 1, ...]`."""
        with_titles = all("positive_title" in example for example in examples)
        texts = [example["positive"] for example in examples]
        titles = [example["positive_title"] for example in examples] if with_titles else None
        for position, example in enumerate(examples):
            negatives, negative_titles = self.select_negatives(example, position)
            texts.extend(negatives)
            if titles is not None:
                if negative_titles is None:
                    raise ValueError(f"example {position} has positive_title but no negative_titles")
                titles.extend(negative_titles)
        return texts, titles

    def __call__(self, examples: Sequence[dict]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("TCTCollator got an empty batch")
        for position, example in enumerate(examples):
            missing = [key for key in ("query", "positive") if key not in example]
            if missing:
                raise ValueError(
                    f"example {position} lacks {missing}; training examples are dicts with query, positive, "
                    f"negatives (set TrainingArguments(remove_unused_columns=False))"
                )
        queries = [example["query"] for example in examples]
        passages, titles = self.passages_in_loss_order(examples)
        batch: dict[str, torch.Tensor] = {}
        models = [
            (prefix, model) for prefix, model in (("", self.student), ("teacher_", self.teacher)) if model is not None
        ]
        for prefix, model in models:
            extra = prefix_length(model)
            encoded_queries = model.tokenize_queries(queries, max_length=self.query_max_length + extra)
            encoded_passages = model.tokenize_passages(
                passages, titles=titles, max_length=self.passage_max_length + extra
            )
            batch[f"{prefix}query_input_ids"] = encoded_queries["input_ids"]
            batch[f"{prefix}query_attention_mask"] = encoded_queries["attention_mask"]
            batch[f"{prefix}passage_input_ids"] = encoded_passages["input_ids"]
            batch[f"{prefix}passage_attention_mask"] = encoded_passages["attention_mask"]
        batch["passage_ids"] = torch.tensor(
            [passage_id(text, title) for text, title in zip(passages, titles or [None] * len(passages))],
            dtype=torch.int64,
        )
        return batch
