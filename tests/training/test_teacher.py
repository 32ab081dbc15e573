"""The cheap teacher path (length buckets, inference mode, dtype rules) gives the teacher's own scores."""

from __future__ import annotations

import pytest
import torch
from conftest import make_examples

from tct_hf import ColBERTModel
from tct_hf.data import TCTCollator
from tct_hf.training import teacher as teacher_module
from tct_hf.training.teacher import (
    cpu_has_native_bf16,
    default_length_buckets,
    encode_passages_in_length_buckets,
    float32_projection,
    in_batch_teacher_scores,
    pairwise_teacher_scores,
    resolve_teacher_dtype,
    teacher_token_embeddings,
)


@pytest.fixture(scope="module")
def teacher_and_batch(tiny_dirs):
    _, teacher_dir = tiny_dirs
    teacher = ColBERTModel.from_pretrained(teacher_dir).eval()
    examples = make_examples(12, num_negatives=1, seed=5)
    for i, example in enumerate(examples):  # very different passage lengths, so that buckets really differ
        example["positive"] = " ".join([example["positive"]] * (1 + i % 4))
    batch = TCTCollator(None, teacher, query_max_length=8, passage_max_length=40, num_negatives=1)(examples)
    return teacher, batch


def test_length_buckets_equal_one_padded_call(teacher_and_batch):
    teacher, batch = teacher_and_batch
    ids, mask = batch["teacher_passage_input_ids"], batch["teacher_passage_attention_mask"]
    assert len(set(mask.sum(1).tolist())) > 3
    with torch.no_grad():
        reference, reference_mask = teacher.encode_passage_tokens(ids, mask)
        for buckets in (3, None, ids.shape[0] // 2):  # None: the CPU default, 4
            bucketed, bucketed_mask = encode_passages_in_length_buckets(teacher, ids, mask, buckets=buckets)
            assert torch.equal(bucketed_mask, reference_mask)
            scored = reference_mask[..., None]
            torch.testing.assert_close(bucketed * scored, reference * scored, atol=1e-5, rtol=0)


def test_default_buckets_are_four_on_cpu_and_one_launch_elsewhere():
    cpu = torch.device("cpu")
    assert [default_length_buckets(n, cpu) for n in (1, 7, 8, 64, 192)] == [1, 1, 4, 4, 4]
    assert default_length_buckets(192, torch.device("cuda")) == 1


def test_scores_equal_teacher_forward_and_are_usable_as_targets(teacher_and_batch):
    teacher, batch = teacher_and_batch
    with torch.no_grad():
        reference = teacher(
            batch["teacher_query_input_ids"],
            batch["teacher_query_attention_mask"],
            batch["teacher_passage_input_ids"],
            batch["teacher_passage_attention_mask"],
        ).scores
    tokens = teacher_token_embeddings(teacher, batch, "float32")
    matrix = in_batch_teacher_scores(teacher, batch, gather=False, tokens=tokens)
    pairs = pairwise_teacher_scores(teacher, batch, num_negatives=1, tokens=tokens)
    torch.testing.assert_close(matrix, reference, atol=1e-4, rtol=0)
    b = reference.shape[0]
    hand_pairs = torch.stack(
        [reference[torch.arange(b), torch.arange(b)], reference[torch.arange(b), b + torch.arange(b)]], 1
    )
    torch.testing.assert_close(pairs, hand_pairs, atol=1e-4, rtol=0)
    student = torch.zeros_like(matrix, requires_grad=True)  # an inference tensor here would fail in backward
    (torch.softmax(matrix, -1) * torch.log_softmax(student, -1)).sum().backward()
    assert student.grad is not None


def test_resolve_teacher_dtype(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_teacher_dtype("float32", cpu) == torch.float32
    assert resolve_teacher_dtype("bfloat16", cpu) == torch.bfloat16
    # "auto" on the CPU follows the CPU's native bf16 support, each answer checked on its own.
    monkeypatch.setattr(teacher_module, "cpu_has_native_bf16", lambda: True)
    assert resolve_teacher_dtype("auto", cpu) == torch.bfloat16
    monkeypatch.setattr(teacher_module, "cpu_has_native_bf16", lambda: False)
    assert resolve_teacher_dtype("auto", cpu) == torch.float32
    assert resolve_teacher_dtype("auto", torch.device("meta")) == torch.float32  # neither CUDA nor CPU
    with pytest.raises(ValueError, match="GPU"):
        resolve_teacher_dtype("float16", cpu)
    with pytest.raises(ValueError, match="teacher_autocast_dtype"):
        resolve_teacher_dtype("int8", cpu)


def test_float32_teacher_stays_float32_inside_an_outer_bf16_autocast(teacher_and_batch):
    teacher, batch = teacher_and_batch
    plain = teacher_token_embeddings(teacher, batch, "float32").passages
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = teacher_token_embeddings(teacher, batch, "float32").passages
    torch.testing.assert_close(inside, plain, atol=1e-6, rtol=0)


def test_projection_runs_in_float32_under_autocast_and_is_restored(teacher_and_batch):
    teacher, _ = teacher_and_batch
    linear = teacher.linear
    hidden = torch.randn(2, 3, linear.in_features)
    with torch.autocast("cpu", dtype=torch.bfloat16), float32_projection(teacher):
        projected = teacher.linear(hidden)
    assert teacher.linear is linear
    assert projected.dtype == torch.float32
    torch.testing.assert_close(projected, linear(hidden), atol=1e-6, rtol=0)


def test_cpu_has_native_bf16_reads_the_cpu_flags():
    """Against an independent read of /proc/cpuinfo: native bf16 = the avx512_bf16 or amx_bf16 flag."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flag_lines = [line for line in handle if line.startswith("flags")]
    except OSError:
        flag_lines = []
    flags = set(flag_lines[0].split(":", 1)[1].split()) if flag_lines else set()
    assert cpu_has_native_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})


@pytest.mark.parametrize("layout", teacher_module.PASSAGE_LAYOUTS)
def test_every_passage_layout_equals_one_padded_call_in_float32(teacher_and_batch, layout):
    teacher, batch = teacher_and_batch
    ids, mask = batch["teacher_passage_input_ids"], batch["teacher_passage_attention_mask"]
    assert mask.sum() < mask.numel() * 0.8  # much padding to remove
    with torch.no_grad():
        reference, reference_mask = teacher.encode_passage_tokens(ids, mask)
    tokens = teacher_token_embeddings(teacher, batch, "float32", passage_layout=layout)
    assert torch.equal(tokens.passage_mask, reference_mask)
    scored = reference_mask[..., None]
    torch.testing.assert_close(tokens.passages * scored, reference * scored, atol=1e-5, rtol=0)
    gathered = in_batch_teacher_scores(teacher, batch, gather=False, passage_layout=layout)
    exact = in_batch_teacher_scores(teacher, batch, gather=False, passage_layout="padded")
    torch.testing.assert_close(gathered, exact, atol=1e-5, rtol=0)


def test_attention_groups_and_layout_errors(teacher_and_batch):
    cpu = torch.device("cpu")
    groups = teacher_module.default_attention_groups
    assert [groups(n, cpu) for n in (1, 3, 8, 64, 192)] == [1, 1, 4, 8, 8]
    assert groups(192, torch.device("cuda")) == 1
    teacher, batch = teacher_and_batch
    with pytest.raises(ValueError, match="layout must be one of"):
        teacher_token_embeddings(teacher, batch, "float32", passage_layout="packed")
    from tct_hf.training import TCTTrainingArguments

    with pytest.raises(ValueError, match="teacher_passages"):
        TCTTrainingArguments(output_dir="unused", teacher_passages="packed", use_cpu=True)


def naive_pair_scores(tokens, pairs) -> torch.Tensor:
    """MaxSim of the given (query, passage) pairs, one pair at a time in float64."""
    scores = []
    for b, n in pairs:
        similarity = tokens.queries[b].double() @ tokens.passages[n].double().T  # [Lq, Ld]
        best = similarity[:, tokens.passage_mask[n]].max(dim=1).values
        scores.append(float(best[tokens.query_mask[b]].sum()))
    return torch.tensor(scores, dtype=torch.float64)


@pytest.fixture(scope="module")
def two_negative_batch(teacher_and_batch):
    teacher, _ = teacher_and_batch
    examples = make_examples(7, num_negatives=2, seed=9)
    return TCTCollator(None, teacher, query_max_length=8, passage_max_length=40, num_negatives=2)(examples)


@pytest.mark.parametrize("chunk_size", [1, 3, 7])
def test_cached_teacher_scores_equal_unchunked_and_naive_scores(teacher_and_batch, two_negative_batch, chunk_size):
    teacher, _ = teacher_and_batch
    batch = two_negative_batch  # 7 queries, 21 passages: chunks of 3 leave a short last chunk
    tokens = teacher_token_embeddings(teacher, batch, "float32")  # one call each side: the unchunked tokens
    b, n = tokens.queries.shape[0], tokens.passages.shape[0]
    naive = naive_pair_scores(tokens, [(i, j) for i in range(b) for j in range(n)]).view(b, n).float()
    unchunked = in_batch_teacher_scores(teacher, batch, gather=False)
    cached = in_batch_teacher_scores(teacher, batch, gather=False, chunk_size=chunk_size)
    torch.testing.assert_close(unchunked, naive, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(cached, unchunked, atol=1e-5, rtol=1e-6)
    own = [(i, j) for i in range(b) for j in (i, b + 2 * i, b + 2 * i + 1)]  # positive, then both negatives
    naive_pairs = naive_pair_scores(tokens, own).view(b, 3).float()
    cached_pairs = pairwise_teacher_scores(teacher, batch, num_negatives=2, chunk_size=chunk_size)
    torch.testing.assert_close(
        pairwise_teacher_scores(teacher, batch, num_negatives=2), naive_pairs, atol=1e-5, rtol=0
    )
    torch.testing.assert_close(cached_pairs, naive_pairs, atol=1e-5, rtol=0)
    assert not cached.is_inference() and not cached_pairs.is_inference()  # usable as loss targets


def test_cached_teacher_encodes_and_scores_chunk_by_chunk(teacher_and_batch, monkeypatch):
    """Memory that does not grow with the batch: no encoder call over more than `chunk_size` rows, no MaxSim call
    over more than `chunk_size` passages, and a block budget of `chunk_size` x `chunk_size` pairs."""
    teacher, batch = teacher_and_batch  # 12 queries, 24 passages
    encoded, scored = [], []
    for name in ("encode_query_tokens", "encode_passage_tokens"):
        original = getattr(teacher, name)

        def recording(input_ids, *args, _original=original, **kwargs):
            encoded.append(input_ids.shape[0])
            return _original(input_ids, *args, **kwargs)

        monkeypatch.setattr(teacher, name, recording)
    original_maxsim = teacher.maxsim

    def recording_maxsim(q, q_mask, d, d_mask, chunk_elements):
        scored.append((d.shape[0], chunk_elements))
        return original_maxsim(q, q_mask, d, d_mask, chunk_elements=chunk_elements)

    monkeypatch.setattr(teacher, "maxsim", recording_maxsim)
    in_batch_teacher_scores(teacher, batch, gather=False, chunk_size=5)
    assert max(encoded) == 5 and sum(encoded) == 12 + 24
    query_length, passage_length = (
        batch["teacher_query_input_ids"].shape[1],
        batch["teacher_passage_input_ids"].shape[1],
    )
    assert [count for count, _ in scored] == [5, 5, 5, 5, 4]
    assert {budget for _, budget in scored} == {5 * 5 * query_length * passage_length}


def test_maxsim_stays_float32_inside_an_outer_bf16_autocast(teacher_and_batch):
    teacher, batch = teacher_and_batch
    plain = in_batch_teacher_scores(teacher, batch, gather=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for chunk_size in (None, 5):
            inside = in_batch_teacher_scores(teacher, batch, gather=False, chunk_size=chunk_size)
            assert inside.dtype == torch.float32
            torch.testing.assert_close(inside, plain, atol=1e-5, rtol=1e-6)
