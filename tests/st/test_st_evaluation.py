"""evaluate_student on a SentenceTransformer: the same metrics as a hand-built run from the model's own similarity."""

from __future__ import annotations

from st_helpers import make_rows, new_student

from tct_hf.evaluation.metrics import evaluate_run
from tct_hf.training import DevSet, evaluate_student


def test_evaluate_student_ranks_a_sentence_transformer_by_its_own_similarity():
    student = new_student().train()
    rows = make_rows(6, num_negatives=1)
    docids = [f"d{i}" for i in range(6)] + [f"n{i}" for i in range(6)]
    passages = [row["positive"] for row in rows] + [row["negative_1"] for row in rows]
    queries = {str(i): row["query"] for i, row in enumerate(rows)}
    qrels = {str(i): {f"d{i}": 1} for i in range(6)}
    metrics = evaluate_student(student, DevSet(docids, passages, queries, qrels))
    assert student.training  # evaluation restores the training flag
    scores = student.similarity(student.encode_query(list(queries.values())), student.encode_document(passages))
    run = {qid: {docids[j]: float(scores[i, j]) for j in range(len(docids))} for i, qid in enumerate(queries)}
    expected = evaluate_run(run, qrels, metrics=list(metrics)).metrics
    assert metrics == {name: expected[name] for name in metrics}
