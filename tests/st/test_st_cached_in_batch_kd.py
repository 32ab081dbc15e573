"""tct_hf.st.CachedInBatchKDLoss: the loss and gradients of the uncached InBatchKDLoss, in sentence-transformers'
trainer too (gradient accumulation), with the dropout of its mini-batch forward passes replayed."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
from st_helpers import features_of, load_teacher, make_rows, make_student
from st_helpers import st_dirs as dirs
from torch.utils.data import BatchSampler, SequentialSampler
from utils import write_tiny_bert

from tct_hf.losses import chunk_ranges
from tct_hf.st import CachedInBatchKDLoss, InBatchKDLoss


def rows_with_duplicates() -> list[dict]:
    rows = make_rows(5, num_negatives=2)
    rows[2]["negative_1"] = rows[0]["positive"]  # another query's positive as a negative: masked
    rows[0]["negative_2"] = rows[0]["negative_1"]  # a repeated negative
    return rows


def loss_and_grads(loss_fn, student, rows):
    student.zero_grad(set_to_none=True)
    loss = loss_fn(features_of(student, rows))
    loss.backward()
    grads = {name: p.grad.clone() for name, p in student.named_parameters() if p.grad is not None}
    student.zero_grad(set_to_none=True)
    return float(loss.detach()), grads


def assert_same(got, expected, atol=1e-5):
    assert got.keys() == expected.keys() and len(expected) > 10
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=atol, msg=name)


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
@pytest.mark.parametrize("mini_batch_size", [1, 3])
def test_cached_loss_equals_the_uncached_loss(similarity, mini_batch_size):
    """Without dropout (the tiny student has none): same loss, same gradients, whatever the mini-batch."""
    teacher = load_teacher()
    torch.manual_seed(0)
    student = make_student(dirs()["student"], similarity=similarity)
    rows = rows_with_duplicates()
    loss, expected = loss_and_grads(InBatchKDLoss(student, teacher, teacher_autocast_dtype="float32"), student, rows)
    cached = CachedInBatchKDLoss(student, teacher, teacher_autocast_dtype="float32", mini_batch_size=mini_batch_size)
    cached_loss, got = loss_and_grads(cached, student, rows)
    assert abs(cached_loss - loss) < 1e-5
    assert_same(got, expected)
    with torch.no_grad():  # evaluation: the plain loss
        assert abs(float(cached(features_of(student, rows))) - loss) < 1e-5


def test_dropout_of_the_mini_batches_is_replayed(tmp_path):
    teacher = load_teacher()
    torch.manual_seed(0)
    student = make_student(write_tiny_bert(tmp_path / "dropout", seed=1, hidden_dropout_prob=0.2)).train()
    rows = rows_with_duplicates()
    reference_fn = InBatchKDLoss(student, teacher, teacher_autocast_dtype="float32")
    features = features_of(student, rows)
    queries, passages = reference_fn.batch_texts(features)
    teacher_scores = reference_fn.teacher_scores(queries, passages)
    torch.manual_seed(5)  # plain autograd over the mini-batches the cached loss embeds, in its order
    columns = []
    for column in features:
        count = column["input_ids"].shape[0]
        chunks = [
            student({k: v[b:e] if torch.is_tensor(v) and v.dim() else v for k, v in column.items()})
            for b, e in chunk_ranges(count, 2)
        ]
        columns.append(torch.cat([chunk["sentence_embedding"] for chunk in chunks]))
    q, p = reference_fn.split_embeddings(columns)
    ids = reference_fn.passage_ids(passages)
    reference = reference_fn.loss_from_scores(reference_fn.student_scores(q, p, ids), teacher_scores)
    reference.backward()
    expected = {name: p.grad.clone() for name, p in student.named_parameters() if p.grad is not None}
    student.zero_grad(set_to_none=True)
    cached = CachedInBatchKDLoss(student, teacher, teacher_autocast_dtype="float32", mini_batch_size=2)
    torch.manual_seed(5)
    loss, got = loss_and_grads(cached, student, rows)
    assert abs(loss - float(reference.detach())) < 1e-6
    assert_same(got, expected)
    torch.manual_seed(6)
    _, other = loss_and_grads(cached, student, rows)
    assert max(float((other[name] - value).abs().max()) for name, value in expected.items()) > 1e-4


class InOrderTrainer(SentenceTransformerTrainer):
    def get_batch_sampler(self, dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0):
        return BatchSampler(SequentialSampler(range(len(dataset))), batch_size=batch_size, drop_last=drop_last)


def test_in_the_trainer_with_gradient_accumulation(tmp_path):
    """2 micro-batches of 3, mini-batches of 2: the SGD step of the uncached loss averaged over the micro-batches."""
    teacher = load_teacher()
    rows = make_rows(6, num_negatives=1)
    torch.manual_seed(0)
    reference = make_student(dirs()["student"])
    loss_fn = InBatchKDLoss(reference, teacher, teacher_autocast_dtype="float32")
    for half in (rows[:3], rows[3:]):
        (loss_fn(features_of(reference, half)) / 2).backward()
    expected = {n: p.detach() - p.grad for n, p in reference.named_parameters() if p.grad is not None}
    torch.manual_seed(0)
    student = make_student(dirs()["student"])
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=3,
        gradient_accumulation_steps=2,
        max_steps=1,
        optim="sgd",
        learning_rate=1.0,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,
        use_cpu=True,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    trainer = InOrderTrainer(
        model=student,
        args=args,
        train_dataset=Dataset.from_list(rows),
        loss=CachedInBatchKDLoss(student, teacher, teacher_autocast_dtype="float32", mini_batch_size=2),
    )
    trainer.train()
    params = dict(student.named_parameters())
    assert len(expected) > 10
    for name, value in expected.items():
        torch.testing.assert_close(params[name].detach(), value, atol=2e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("mini_batch_size", [0, -1, 2.5])
def test_bad_mini_batch_size_is_refused(mini_batch_size):
    student = make_student(dirs()["student"])
    with pytest.raises(ValueError, match="^CachedInBatchKDLoss: the chunk size must be a positive integer"):
        CachedInBatchKDLoss(student, load_teacher(), mini_batch_size=mini_batch_size)


def test_config_names_the_mini_batch():
    loss = CachedInBatchKDLoss(make_student(dirs()["student"]), load_teacher(), mini_batch_size=7)
    assert loss.get_config_dict()["mini_batch_size"] == 7 and "Lin" in loss.citation
