"""TCTCollator: loss column order, lengths with the prefix, content-hash ids, seeded negative draws, teacher inputs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import BertTokenizer
from utils import write_tiny_bert

from tct_hf.data import TCTCollator, passage_id
from tct_hf.modeling_tct import TCTModel

EXAMPLES = [
    {"query": "what is the capital of france", "positive": "paris is the capital", "negatives": ["heat", "wing"]},
    {"query": "river flow", "positive": "water flow in a river", "negatives": ["paris is the capital", "tax"]},
    {"query": "bank price", "positive": "the market price of a bank", "negatives": ["music art", "film game"]},
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("student"))


@pytest.fixture(scope="module")
def student(model_dir):
    return TCTModel.from_pretrained(str(model_dir))


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return BertTokenizer.from_pretrained(str(model_dir))


class StanfordLikeTeacher:
    """A teacher with other conventions: [CLS] [unused0] q [SEP] + [MASK] padding, no prefix skipped (0)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.config = SimpleNamespace(skip_positions=0)

    def tokenize_queries(self, texts, max_length=None):
        encoded = self.tokenizer(
            ["[unused0] " + text for text in texts], max_length=max_length, truncation=True, padding="max_length"
        )
        ids = torch.tensor(encoded["input_ids"])
        ids[ids == self.tokenizer.pad_token_id] = self.tokenizer.mask_token_id
        return {"input_ids": ids, "attention_mask": torch.tensor(encoded["attention_mask"])}

    def tokenize_passages(self, texts, titles=None, max_length=None):
        return self.tokenizer(
            ["[unused1] " + text for text in texts],
            max_length=max_length,
            truncation=True,
            padding="longest",
            return_tensors="pt",
        )


def pyserini_query_ids(tokenizer, text: str, length: int = 36) -> list[int]:
    """Pyserini's TCT query input: '[CLS] [Q] ' + query + '[MASK]' * 36, 36 tokens, no special tokens added."""
    formatted = "[CLS] [Q] " + text + "[MASK]" * length
    return tokenizer(formatted, max_length=length, truncation=True, add_special_tokens=False)["input_ids"]


def test_order_shapes_and_student_tokens(student, tokenizer):
    collator = TCTCollator(student, num_negatives=2)
    batch = collator(EXAMPLES)
    batch_size, n_neg = len(EXAMPLES), 2
    assert batch["query_input_ids"].shape == (batch_size, 32 + 4)
    assert batch["passage_input_ids"].shape[0] == batch_size * (1 + n_neg)
    assert batch["passage_ids"].dtype == torch.int64 and batch["passage_ids"].shape == (batch_size * (1 + n_neg),)
    assert set(batch) == {
        "query_input_ids",
        "query_attention_mask",
        "passage_input_ids",
        "passage_attention_mask",
        "passage_ids",
    }
    for row, example in enumerate(EXAMPLES):
        assert batch["query_input_ids"][row].tolist() == pyserini_query_ids(tokenizer, example["query"])
    # Column j holds: positives 0..B-1, then query i's negative k at B + i * n_neg + k (2 negatives: no draw).
    expected_order = [e["positive"] for e in EXAMPLES] + [n for e in EXAMPLES for n in e["negatives"]]
    for column, text in enumerate(expected_order):
        ids = batch["passage_input_ids"][column][batch["passage_attention_mask"][column].bool()].tolist()
        expected = tokenizer("[CLS] [D] " + text, add_special_tokens=False)["input_ids"]
        assert ids == expected, column
        assert int(batch["passage_ids"][column]) == passage_id(text)


def test_identical_passages_get_identical_ids(student):
    batch = TCTCollator(student, num_negatives=2)(EXAMPLES)
    ids = batch["passage_ids"].tolist()
    # "paris is the capital" is query 0's positive (column 0) and query 1's first negative (column 3 + 2 = 5).
    assert ids[0] == ids[5]
    assert len(set(ids)) == len(ids) - 1
    assert all(0 <= value < 2**63 for value in ids)


def test_prefix_is_added_to_the_lengths(student):
    long_text = " ".join(["water"] * 400)
    batch = TCTCollator(student, query_max_length=32, passage_max_length=150, num_negatives=0)(
        [{"query": long_text, "positive": long_text, "negatives": []}]
    )
    assert batch["query_input_ids"].shape == (1, 36)
    assert batch["passage_input_ids"].shape == (1, 154)
    short = TCTCollator(student, query_max_length=8, passage_max_length=10, num_negatives=0)(
        [{"query": long_text, "positive": long_text, "negatives": []}]
    )
    assert short["query_input_ids"].shape == (1, 12) and short["passage_input_ids"].shape == (1, 14)


def test_teacher_inputs_use_the_teachers_conventions(student, tokenizer):
    teacher = StanfordLikeTeacher(tokenizer)
    batch = TCTCollator(student, teacher, num_negatives=1)(EXAMPLES)
    for key in ("query_input_ids", "query_attention_mask", "passage_input_ids", "passage_attention_mask"):
        assert batch[f"teacher_{key}"].shape[0] == batch[key].shape[0]
    assert batch["teacher_query_input_ids"].shape[1] == 32  # skip_positions 0: lengths are the teacher's totals
    expected = tokenizer("[unused0] " + EXAMPLES[0]["query"])["input_ids"]  # [CLS] ... [SEP], then [MASK]s
    expected += [tokenizer.mask_token_id] * (32 - len(expected))
    assert batch["teacher_query_input_ids"][0].tolist() == expected
    assert expected[0] == tokenizer.cls_token_id != batch["query_input_ids"][0, 1]
    assert batch["teacher_passage_input_ids"].shape[0] == 2 * len(EXAMPLES)


def test_negative_draw_is_seeded_per_example_and_errors_when_short(student):
    many = [{"query": "q one", "positive": "p one", "negatives": [f"n{i}" for i in range(10)]}]
    picks = {}
    for seed in (0, 1):
        collator = TCTCollator(student, num_negatives=3, seed=seed)
        passages, _ = collator.passages_in_loss_order(many)
        assert len(passages) == 4 and len(set(passages[1:])) == 3 and set(passages[1:]) <= set(many[0]["negatives"])
        assert collator.passages_in_loss_order(many)[0] == passages  # same example, same draw
        picks[seed] = passages
    assert picks[0] != picks[1]
    collator = TCTCollator(student, num_negatives=3, seed=0)
    collator.set_epoch(1)
    assert collator.passages_in_loss_order(many)[0] != picks[0]
    with pytest.raises(ValueError, match=r"example 0 of the batch .* has 10 negatives, .*num_negatives=11"):
        TCTCollator(student, num_negatives=11)(many)


@pytest.mark.parametrize("convention, query_total", [("tct", 36), ("stanford", 32)])
def test_colbert_teacher_lengths_follow_its_convention(student, model_dir, convention, query_total):
    from tct_hf.configuration_colbert import ColBERTConfig
    from tct_hf.modeling_colbert import ColBERTModel

    tokenizer = BertTokenizer.from_pretrained(str(model_dir))  # the teacher registers its markers in it
    config = ColBERTConfig(
        convention=convention,
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        dim=16,
    )
    teacher = ColBERTModel(config)
    teacher.tokenizer = tokenizer
    long_text = " ".join(["water"] * 400)
    batch = TCTCollator(student, teacher, num_negatives=1)(
        [{"query": long_text, "positive": long_text, "negatives": ["heat"]}]
    )
    assert batch["teacher_query_input_ids"].shape == (1, query_total)  # 32 + skip_positions (4 or 0)
    assert batch["teacher_passage_input_ids"].shape == (2, 150 + config.skip_positions)
    assert batch["query_input_ids"].shape == (1, 36)
    first_tokens = teacher.tokenizer.convert_ids_to_tokens(batch["teacher_query_input_ids"][0, :2].tolist())
    assert first_tokens == (["[CLS]", "["] if convention == "tct" else ["[CLS]", "[unused0]"])


def test_collator_from_training_args_takes_their_lengths_negatives_and_seed(student, tmp_path):
    from tct_hf.training import TCTTrainingArguments

    args = TCTTrainingArguments(
        output_dir=str(tmp_path), query_max_length=7, passage_max_length=11, num_negatives=3, seed=5, use_cpu=True
    )
    collator = TCTCollator.from_training_args(args, student=student)
    assert (collator.student, collator.teacher) == (student, None)
    assert (collator.query_max_length, collator.passage_max_length, collator.num_negatives, collator.seed) == (
        7,
        11,
        3,
        5,
    )
