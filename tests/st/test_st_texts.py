"""The batch's texts reach InBatchKDLoss through SentenceTransformerTrainer's own collator (`tct_hf.st.texts`):
the plain trainer call trains with the teacher on the exact, prompt-free texts, and nothing else about the student
changes (encode, evaluators, saved files, pickling)."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
from st_helpers import features_of, load_teacher, make_rows, new_student

from tct_hf.st import CachedInBatchKDLoss, InBatchKDDataCollator, InBatchKDLoss
from tct_hf.st.texts import PreprocessWithTexts

PROMPTS = {"query": "query: ", "positive": "passage: ", "negative_1": "passage: "}


def training_args(tmp_path, **overrides) -> SentenceTransformerTrainingArguments:
    values = dict(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=4,
        max_steps=1,
        learning_rate=1e-3,
        use_cpu=True,
        save_strategy="no",
        report_to="none",
        logging_steps=1,
        disable_tqdm=True,
    )
    return SentenceTransformerTrainingArguments(**{**values, **overrides})


def record_teacher(loss_fn) -> list[tuple[list[str], list[str], torch.Tensor]]:
    """Every (queries, passages, scores) the loss's teacher scores."""
    calls = []
    original = loss_fn.teacher_scores

    def recording(queries, passages, *args, **kwargs):
        calls.append((list(queries), list(passages), original(queries, passages, *args, **kwargs)))
        return calls[-1][2]

    loss_fn.teacher_scores = recording
    return calls


def expected_passages(rows: list[dict], queries: list[str]) -> list[str]:
    """The batch's passages in the losses' order (positives, then each query's negatives), from the raw rows."""
    by_query = {row["query"]: row for row in rows}
    batch = [by_query[query] for query in queries]
    negatives = [key for key in rows[0] if key.startswith("negative")]
    return [row["positive"] for row in batch] + [row[key] for row in batch for key in negatives]


@pytest.mark.parametrize("loss_class", [InBatchKDLoss, CachedInBatchKDLoss])
def test_plain_trainer_call_gives_the_teacher_the_exact_prompt_free_texts(tmp_path, loss_class):
    student = new_student()
    teacher = load_teacher()
    rows = make_rows(4, num_negatives=1)
    rows[0]["query"] = "Café PARIS Ünïcode ☃"  # the student's uncased tokenizer cannot spell it back
    before = {k: v.clone() for k, v in student.state_dict().items()}
    loss_fn = loss_class(student, teacher, teacher_autocast_dtype="float32")
    calls = record_teacher(loss_fn)
    args = training_args(tmp_path, prompts=PROMPTS, dataloader_num_workers=1)
    trainer = SentenceTransformerTrainer(model=student, args=args, train_dataset=Dataset.from_list(rows), loss=loss_fn)
    assert type(trainer.data_collator) is SentenceTransformerDataCollator  # sentence-transformers' default
    trainer.train()

    assert len(calls) == 1
    queries, passages, scores = calls[0]
    assert sorted(queries) == sorted(row["query"] for row in rows)  # no prompt, no lower-casing
    assert passages == expected_passages(rows, queries)
    expected = torch.from_numpy(teacher.score_matrix(queries, passages))
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=0)
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items())

    # ... while the student read its prompts: its token ids are those of prompt + text
    batch = trainer.data_collator(rows)
    assert batch["query_text"] == [row["query"] for row in rows]
    prompted = student.preprocess([PROMPTS["query"] + row["query"] for row in rows])["input_ids"]
    assert torch.equal(batch["query_input_ids"], prompted)


def test_the_student_is_unchanged_outside_the_loss(tmp_path):
    """encode (every output), an evaluator, save_pretrained's files, pickling and deepcopy: as without the loss."""
    plain, student = new_student(), new_student()
    InBatchKDLoss(student, load_teacher())
    rows = make_rows(6, num_negatives=1)
    texts = [row["query"] for row in rows] + [row["positive"] for row in rows]
    assert student.preprocess(texts)["text"] == texts and "text" not in plain.preprocess(texts)

    seen = []  # what the Hugging Face model receives: BertModel.forward takes **kwargs, so "text" would get there
    bert = student[0].model
    forward = bert.forward  # Transformer calls the model's forward method itself, not through hooks

    def recording_forward(*args, **kwargs):
        seen.append(set(kwargs))
        return forward(*args, **kwargs)

    bert.forward = recording_forward
    assert torch.equal(student.encode(texts, convert_to_tensor=True), plain.encode(texts, convert_to_tensor=True))
    assert torch.equal(
        student.encode(texts, prompt="query: ", convert_to_tensor=True),
        plain.encode(texts, prompt="query: ", convert_to_tensor=True),
    )
    ours, theirs = student.encode(texts[:2], output_value=None), plain.encode(texts[:2], output_value=None)
    assert [sorted(item) for item in ours] == [sorted(item) for item in theirs]
    assert seen and all("text" not in keys for keys in seen)
    del bert.forward

    evaluator = InformationRetrievalEvaluator(
        {str(i): row["query"] for i, row in enumerate(rows)},
        {f"d{i}": row["positive"] for i, row in enumerate(rows)},
        {str(i): {f"d{i}"} for i in range(len(rows))},
        show_progress_bar=False,
    )
    assert evaluator(student) == evaluator(plain)

    for name, model in (("plain", plain), ("student", student)):
        model.save_pretrained(str(tmp_path / name))
    files = {}
    for name in ("plain", "student"):
        files[name] = {
            p.relative_to(tmp_path / name): p.read_bytes() for p in (tmp_path / name).rglob("*") if p.is_file()
        }
    assert files["student"] == files["plain"] and len(files["plain"]) > 3

    for copied in (pickle.loads(pickle.dumps(student)), copy.deepcopy(student)):
        assert copied.preprocess(texts[:2])["text"] == texts[:2]  # still keeps the texts, for its own model
        assert copied.preprocess.__wrapped__.__self__ is copied
        assert torch.equal(copied.encode(texts, convert_to_tensor=True), plain.encode(texts, convert_to_tensor=True))


def test_the_collator_pickles_for_dataloader_workers():
    student = new_student()
    InBatchKDLoss(student, load_teacher())
    rows = make_rows(3, num_negatives=1)
    collator = SentenceTransformerDataCollator(preprocess_fn=student.preprocess, prompts=PROMPTS)
    restored = pickle.loads(pickle.dumps(collator))
    batch, expected = restored(rows), collator(rows)
    assert batch.keys() == expected.keys()
    assert batch["negative_1_text"] == [row["negative_1"] for row in rows]
    for key, value in batch.items():
        assert torch.equal(value, expected[key]) if isinstance(value, torch.Tensor) else value == expected[key], key


def test_a_second_loss_or_the_explicit_collator_wraps_once():
    student = new_student()
    teacher = load_teacher()
    InBatchKDLoss(student, teacher)
    wrapper, hooks = student.preprocess, len(student._forward_pre_hooks)
    CachedInBatchKDLoss(student, teacher)
    assert student.preprocess is wrapper and len(student._forward_pre_hooks) == hooks == 1
    collator = InBatchKDDataCollator.for_model(student)
    assert collator.preprocess_fn is wrapper and not isinstance(wrapper.__wrapped__, PreprocessWithTexts)
    rows = make_rows(3, num_negatives=1)
    texts = [key for key in collator(rows) if key.endswith("text")]
    assert texts == ["query_text", "positive_text", "negative_1_text"]


def test_loss_factory_or_collator_built_before_the_loss_is_refused_with_the_fix(tmp_path):
    teacher = load_teacher()
    rows = make_rows(4, num_negatives=1)
    fix = (
        r"InBatchKDLoss: the batch carries no texts .* loss=InBatchKDLoss\(student, teacher\), .* not a factory; or "
        "pass data_collator=InBatchKDDataCollator"
    )

    student = new_student()
    trainer = SentenceTransformerTrainer(
        model=student,
        args=training_args(tmp_path),
        train_dataset=Dataset.from_list(rows),
        loss=lambda model: InBatchKDLoss(model, teacher),  # created after the trainer's collator
    )
    with pytest.raises(ValueError, match=fix):
        trainer.train()

    student = new_student()
    features = features_of(student, rows)  # a collator that ran before the loss existed
    with pytest.raises(ValueError, match=fix):
        InBatchKDLoss(student, teacher)(features)


def test_loss_factory_with_the_explicit_collator_trains_on_the_texts(tmp_path):
    teacher = load_teacher()
    rows = make_rows(4, num_negatives=1)
    student = new_student()
    losses = []

    def factory(model):
        losses.append(InBatchKDLoss(model, teacher, teacher_autocast_dtype="float32"))
        return losses[-1]

    args = training_args(tmp_path, prompts=PROMPTS)
    trainer = SentenceTransformerTrainer(
        model=student,
        args=args,
        train_dataset=Dataset.from_list(rows),
        loss=factory,
        data_collator=InBatchKDDataCollator.for_model(student, args),
    )
    calls = record_teacher(losses[-1])
    trainer.train()
    queries, passages, scores = calls[0]
    assert sorted(queries) == sorted(row["query"] for row in rows) and passages == expected_passages(rows, queries)
    torch.testing.assert_close(scores, torch.from_numpy(teacher.score_matrix(queries, passages)), atol=1e-5, rtol=0)
