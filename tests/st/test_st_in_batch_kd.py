"""tct_hf.st.InBatchKDLoss against a naive per-row loop, the teacher's own score_matrix, and bad input."""

from __future__ import annotations

import pytest
import torch
from st_helpers import features_of, load_teacher, make_rows, make_student, new_student
from st_helpers import st_dirs as dirs

from tct_hf import ColBERTModel, TCTModel
from tct_hf.losses.citations import TCT_COLBERT_CITATION
from tct_hf.st import InBatchKDLoss


def rows_with_duplicates() -> list[dict]:
    rows = make_rows(4, num_negatives=2)
    rows[2]["negative_1"] = rows[0]["positive"]  # another query's positive as a negative
    rows[3]["positive"] = rows[1]["positive"]  # two queries share a positive
    rows[0]["negative_2"] = rows[0]["negative_1"]  # a repeated negative
    return rows


def texts_of(rows):
    negatives = [key for key in rows[0] if key.startswith("negative")]
    return [r["query"] for r in rows], [r["positive"] for r in rows] + [r[k] for r in rows for k in negatives]


def naive_loss(student, rows, teacher_matrix, scale, temperature, similarity="cosine") -> torch.Tensor:
    """One row and one column at a time: masked columns skipped by comparing the texts themselves."""
    queries, passages = texts_of(rows)
    q = student(student.preprocess(queries))["sentence_embedding"]
    p = student(student.preprocess(passages))["sentence_embedding"]
    total = torch.zeros(())
    for i in range(len(queries)):
        columns = [
            j
            for j in range(len(passages))
            if j == i or (passages[j] != passages[i] and passages[j] not in passages[:j])
        ]
        if similarity == "cosine":
            s = torch.stack([scale * torch.nn.functional.cosine_similarity(q[i], p[j], dim=0) for j in columns])
        else:
            s = torch.stack([scale * (q[i] @ p[j]) for j in columns])
        t = torch.tensor([float(teacher_matrix[i][j]) / temperature for j in columns])
        target = torch.softmax(t, dim=0)
        total = total + (target * (target.log() - torch.log_softmax(s, dim=0))).sum()
    return total / len(queries)


def grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("similarity,scale", [("cosine", None), ("cosine", 7.0), ("dot", None)])
def test_loss_and_gradients_match_naive_loop(similarity, scale):
    st_dirs = dirs()
    teacher = load_teacher()
    torch.manual_seed(0)
    student = make_student(st_dirs["student"], similarity=similarity)
    rows = rows_with_duplicates()
    loss_fn = InBatchKDLoss(student, teacher, scale=scale, teacher_autocast_dtype="float32")
    assert loss_fn.scale == (scale or {"cosine": 20.0, "dot": 1.0}[similarity])
    loss = loss_fn(features_of(student, rows))
    loss.backward()
    ours = grads(student)
    student.zero_grad()
    queries, passages = texts_of(rows)
    matrix = teacher.score_matrix(queries, passages)
    expected = naive_loss(student, rows, matrix, loss_fn.scale, 0.25, similarity)
    expected.backward()
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)
    reference = grads(student)
    assert len(ours) == len(reference) > 10
    for name, gradient in reference.items():
        torch.testing.assert_close(ours[name], gradient, atol=1e-5, rtol=1e-4, msg=name)


def test_duplicate_masking_changes_the_loss():
    student = new_student()
    teacher = load_teacher()
    rows = rows_with_duplicates()
    masked = InBatchKDLoss(student, teacher, teacher_autocast_dtype="float32")(features_of(student, rows))
    unmasked = InBatchKDLoss(student, teacher, teacher_autocast_dtype="float32", mask_duplicates=False)(
        features_of(student, rows)
    )
    assert abs(float(masked) - float(unmasked)) > 1e-3


def spy_teacher_scores(loss_fn) -> list[torch.Tensor]:
    seen = []
    original = loss_fn.teacher_scores

    def recording(*args, **kwargs):
        seen.append(original(*args, **kwargs))
        return seen[-1]

    loss_fn.teacher_scores = recording
    return seen


def test_teacher_scores_inside_the_loss_equal_score_matrix_on_the_texts():
    """Texts the student's tokenizer cannot spell (accents, capitals) reach the teacher unchanged."""
    student = new_student()
    teacher = load_teacher()
    rows = make_rows(3, num_negatives=2)
    rows[0]["query"] = "Café PARIS Ünïcode ☃"
    rows[1]["positive"] = "Ünïcode passage, WITH Capitals."
    loss_fn = InBatchKDLoss(student, teacher, teacher_autocast_dtype="float32")
    seen = spy_teacher_scores(loss_fn)
    loss_fn(features_of(student, rows))
    queries, passages = texts_of(rows)
    torch.testing.assert_close(seen[0], torch.from_numpy(teacher.score_matrix(queries, passages)), atol=1e-5, rtol=0)


def test_multi_vector_encoder_teacher_scores_equal_its_similarity():
    st_dirs = dirs()
    student = new_student()
    from sentence_transformers import MultiVectorEncoder

    teacher = MultiVectorEncoder(str(st_dirs["multi_vector"]), device="cpu")
    rows = make_rows(3, num_negatives=1)
    loss_fn = InBatchKDLoss(student, teacher, teacher_autocast_dtype="float32")
    seen = spy_teacher_scores(loss_fn)
    loss = loss_fn(features_of(student, rows))
    assert torch.isfinite(loss)
    queries, passages = texts_of(rows)
    expected = teacher.similarity(teacher.encode_query(queries), teacher.encode_document(passages))
    torch.testing.assert_close(seen[0], expected.float(), atol=1e-5, rtol=0)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


def test_teacher_is_frozen_and_its_precision_follows_teacher_dtype():
    student = new_student()
    teacher = load_teacher()
    rows = make_rows(4, num_negatives=1)
    queries, passages = texts_of(rows)
    exact = torch.from_numpy(teacher.score_matrix(queries, passages))
    fp32 = InBatchKDLoss(student, teacher, teacher_autocast_dtype="float32")
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the student's mixed precision must not lower the teacher
        torch.testing.assert_close(fp32.teacher_scores(queries, passages), exact, atol=1e-5, rtol=0)
    bf16 = InBatchKDLoss(student, teacher, teacher_autocast_dtype="bfloat16").teacher_scores(queries, passages)
    assert bf16.dtype == torch.float32
    assert 0 < float((bf16 - exact).abs().max()) < 0.05 * float(exact.abs().max())


def test_config_and_citation_name_the_loss_and_the_paper():
    student = new_student()
    teacher = load_teacher()
    loss_fn = InBatchKDLoss(student, teacher, temperature=0.5)
    config = loss_fn.get_config_dict()
    assert config["temperature"] == 0.5 and config["scale"] == 20.0 and config["similarity_fct"] == "cosine"
    assert config["teacher"].startswith("ColBERTModel")
    assert loss_fn.citation == TCT_COLBERT_CITATION and "In-Batch Negatives for Knowledge" in loss_fn.citation


# ---------------------------------------------------------------- bad input


def test_teacher_that_is_not_colbert_is_refused():
    st_dirs = dirs()
    student = new_student()
    with pytest.raises(TypeError, match="teacher must be a ColBERT"):
        InBatchKDLoss(student, make_student(st_dirs["student"]))
    with pytest.raises(TypeError, match="teacher must be a ColBERT"):
        InBatchKDLoss(student, TCTModel.from_pretrained(st_dirs["student"]))


def test_teacher_without_tokenizer_and_bad_dtype_are_refused():
    st_dirs = dirs()
    student = new_student()
    teacher = load_teacher()
    bare = ColBERTModel.from_pretrained(st_dirs["teacher"])
    bare.tokenizer = None
    with pytest.raises(ValueError, match="no tokenizer"):
        InBatchKDLoss(student, bare)
    with pytest.raises(ValueError, match="teacher_autocast_dtype"):
        InBatchKDLoss(student, teacher, teacher_autocast_dtype="int8")


def test_dataset_without_a_positive_column_is_refused():
    student = new_student()
    teacher = load_teacher()
    rows = [{"query": r["query"]} for r in make_rows(3)]
    with pytest.raises(ValueError, match="add the positive column"):
        InBatchKDLoss(student, teacher)(features_of(student, rows))


def test_batch_of_one_query_is_refused():
    student = new_student()
    teacher = load_teacher()
    with pytest.raises(ValueError, match="per_device_train_batch_size"):
        InBatchKDLoss(student, teacher)(features_of(student, make_rows(1)))


@pytest.mark.parametrize("similarity", ["euclidean", "manhattan"])
def test_student_similarity_that_is_not_a_logit_is_refused(similarity):
    st_dirs = dirs()
    teacher = load_teacher()
    with pytest.raises(ValueError, match="similarity_fn_name"):
        InBatchKDLoss(make_student(st_dirs["student"], similarity=similarity), teacher)


def test_bad_temperature_and_scale_are_refused():
    student = new_student()
    teacher = load_teacher()
    with pytest.raises(ValueError, match="temperature"):
        InBatchKDLoss(student, teacher, temperature=0)
    with pytest.raises(ValueError, match="scale"):
        InBatchKDLoss(student, teacher, scale=-1.0)
