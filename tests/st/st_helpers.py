"""Helpers and fixtures of the tct_hf.st tests: tiny sentence-transformers students, ColBERT teachers (tct_hf
`ColBERTModel`, sentence-transformers `MultiVectorEncoder`) and (query, positive, negative_*) rows.

Plain functions rather than conftest fixtures: test modules elsewhere import their own `conftest` by name, and a
second conftest module would shadow theirs. The models are built once per process in a temporary folder."""

from __future__ import annotations

import atexit
import functools
import shutil
import string
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils import WORDS, write_tiny_bert  # noqa: E402

from tct_hf import ColBERTModel  # noqa: E402


def make_student(backbone: Path, similarity: str = "cosine", normalize: bool = False):
    """A SentenceTransformer over a tiny BERT: Transformer + mean pooling (+ Normalize), MiniLM's layout."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    modules = [Transformer(str(backbone)), Pooling(32, "mean")]
    if normalize:
        modules.append(Normalize())
    return SentenceTransformer(modules=modules, similarity_fn_name=similarity, device="cpu")


def make_rows(count: int, num_negatives: int = 1, seed: int = 0) -> list[dict]:
    """(query, positive, negative_1..n) rows: the positive repeats the query's words, negatives are other words."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(count):
        words = rng.sample(WORDS, 3)
        row = {"query": f"{' '.join(words)} {i}", "positive": " ".join(words + rng.sample(WORDS, 4))}
        for k in range(num_negatives):
            row[f"negative_{k + 1}"] = " ".join(rng.sample(WORDS, 6))
        rows.append(row)
    return rows


def features_of(student, rows: list[dict]) -> list[dict]:
    """What SentenceTransformerTrainer hands the loss: its default collator over ``student.preprocess`` (the texts
    under "text" once an InBatchKDLoss exists for ``student``), one feature dict per column."""
    from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator

    batch = SentenceTransformerDataCollator(preprocess_fn=student.preprocess)(rows)
    return [{k[len(c) + 1 :]: v for k, v in batch.items() if k.startswith(c + "_")} for c in rows[0]]


@functools.cache
def st_dirs() -> dict[str, Path]:
    """Student backbone, a saved tct_hf ColBERT teacher and a saved MultiVectorEncoder teacher."""
    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    root = Path(tempfile.mkdtemp(prefix="tct-hf-st-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    student = write_tiny_bert(root / "student", seed=1)
    backbone = write_tiny_bert(root / "teacher_backbone", seed=2)
    torch.manual_seed(3)
    ColBERTModel.from_pretrained(backbone, convention="tct", dim=16).save_pretrained(root / "teacher")
    torch.manual_seed(4)
    transformer = Transformer(
        str(backbone), query_expansion={"strategy": "fixed", "attend": False, "length": 12}, document_length=24
    )
    multi_vector = MultiVectorEncoder(
        modules=[
            transformer,
            Dense(32, 16, bias=False, activation_function=torch.nn.Identity(), module_input_name="token_embeddings"),
            MultiVectorMask(skiplist_words=list(string.punctuation)),
            Normalize(module_input_name="token_embeddings"),
        ],
        prompts={"query": "query ", "document": "passage "},
        device="cpu",
    )
    multi_vector.save(str(root / "multi_vector"))
    return {"student": student, "teacher": root / "teacher", "multi_vector": root / "multi_vector"}


def load_teacher() -> ColBERTModel:
    """A fresh copy of the tiny tct_hf ColBERT teacher."""
    return ColBERTModel.from_pretrained(st_dirs()["teacher"])


def new_student(similarity: str = "cosine"):
    """A fresh tiny student, the same weights every call."""
    torch.manual_seed(0)
    return make_student(st_dirs()["student"], similarity=similarity)
