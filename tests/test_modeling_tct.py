"""TCTModel against an independent implementation of Pyserini's TCT-ColBERT encoders (written here from the
published conventions with the tokenizer and a plain BertModel), plus bad-input handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BertModel, BertTokenizer
from utils import write_tiny_bert

from tct_hf import TCTConfig, TCTModel

QUERIES = ["what is the boiling temperature of water", "paris", "how does a wing produce low pressure air flow"]
PASSAGES = [
    "water boils at high temperature in the city of paris.",
    "the boundary layer on a wing surface has low speed flow and high pressure; shock waves form at high speed. " * 3,
    "music",
]
TITLES = ["water", "wing theory", ""]


def pyserini_query_embeddings(bert: BertModel, tokenizer: BertTokenizer, queries: list[str]) -> np.ndarray:
    """Pyserini TctColBertQueryEncoder: one query at a time, '[CLS] [Q] ' + q + '[MASK]' * 36, max_length 36,
    numpy average of last_hidden_state[:, 4:]."""
    rows = []
    for query in queries:
        inputs = tokenizer(
            "[CLS] [Q] " + query + "[MASK]" * 36,
            max_length=36,
            truncation=True,
            add_special_tokens=False,
            return_tensors="pt",
        )
        with torch.no_grad():
            hidden = bert(**inputs).last_hidden_state.numpy()
        rows.append(np.average(hidden[:, 4:, :], axis=-2).flatten())
    return np.stack(rows)


def pyserini_passage_embeddings(bert, tokenizer, passages, titles=None) -> np.ndarray:
    """Pyserini TctColBertDocumentEncoder: '[CLS] [D] ' (+ title + ' ') + text, max_length 512, padding longest,
    masked mean over positions 4:."""
    if titles is not None:
        texts = [f"[CLS] [D] {title} {text}" for title, text in zip(titles, passages)]
    else:
        texts = ["[CLS] [D] " + text for text in passages]
    inputs = tokenizer(
        texts, max_length=512, padding="longest", truncation=True, add_special_tokens=False, return_tensors="pt"
    )
    with torch.no_grad():
        hidden = bert(**inputs).last_hidden_state[:, 4:, :]
    mask = inputs["attention_mask"][:, 4:].unsqueeze(-1).float()
    return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).numpy()


@pytest.fixture(scope="module", params=[False, True], ids=["BertModel", "BertForPreTraining"])
def checkpoint(request, tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("bert"), pretraining_heads=request.param, seed=3)


@pytest.fixture(scope="module")
def reference(checkpoint):
    bert = BertModel.from_pretrained(str(checkpoint)).eval()
    tokenizer = BertTokenizer.from_pretrained(str(checkpoint))
    return bert, tokenizer


@pytest.fixture(scope="module")
def model(checkpoint):
    return TCTModel.from_pretrained(str(checkpoint))


@pytest.mark.comparison
def test_query_embeddings_equal_pyserini(model, reference):
    expected = pyserini_query_embeddings(*reference, QUERIES)
    actual = model.encode_queries(QUERIES, batch_size=2)
    assert actual.dtype == np.float32 and actual.shape == (3, 32)
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.comparison
def test_passage_embeddings_equal_pyserini(model, reference):
    expected = pyserini_passage_embeddings(*reference, PASSAGES)
    np.testing.assert_allclose(model.encode_passages(PASSAGES, batch_size=2), expected, atol=1e-5, rtol=1e-5)
    with_titles = pyserini_passage_embeddings(*reference, PASSAGES[:2], TITLES[:2])
    np.testing.assert_allclose(model.encode_passages(PASSAGES[:2], titles=TITLES[:2]), with_titles, atol=1e-5)
    assert not np.allclose(with_titles, expected[:2], atol=1e-3)


def test_loads_float32_with_tokenizer_and_ignores_pretraining_heads(model, checkpoint):
    assert model.dtype == torch.float32
    assert model.tokenizer is not None
    assert not any(name.startswith("cls.") for name in model.state_dict())
    assert not model.bert.pooler.dense.weight.requires_grad


def test_length_sorted_batching_keeps_input_order(model):
    one_by_one = np.concatenate([model.encode_passages([p]) for p in PASSAGES])
    batched = model.encode_passages(PASSAGES, batch_size=2)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert not np.allclose(batched[0], batched[1], atol=1e-3)


def test_forward_pools_positions_after_prefix(model):
    batch = model.tokenize_passages(PASSAGES)
    output = model(**batch)
    hidden = output.last_hidden_state[:, 4:]
    mask = batch["attention_mask"][:, 4:, None].float()
    np.testing.assert_allclose(
        output.embeddings.detach().numpy(), ((hidden * mask).sum(1) / mask.sum(1)).detach().numpy(), atol=1e-6
    )
    assert output.embeddings.requires_grad


def test_query_tokens_are_prefix_then_query_then_masks(model):
    batch = model.tokenize_queries(["paris"])
    tokens = model.tokenizer.convert_ids_to_tokens(batch["input_ids"][0].tolist())
    assert tokens[:5] == ["[CLS]", "[", "q", "]", "paris"]
    assert tokens[5:] == ["[MASK]"] * 31 and batch["attention_mask"].sum().item() == 36


def test_bf16_autocast_on_cpu_and_fp16_refused(model):
    bf16 = model.encode_queries(QUERIES, autocast_dtype=torch.bfloat16)
    assert bf16.dtype == np.float32
    np.testing.assert_allclose(bf16, model.encode_queries(QUERIES), atol=0.1)
    with pytest.raises(ValueError, match="fp16 autocast needs a GPU"):
        model.encode_queries(QUERIES, autocast_dtype=torch.float16)


@pytest.mark.parametrize(
    "texts, message",
    [
        ("a single string", "must be a list of strings"),
        (["fine", ""], r"queries\[1\] is an empty string"),
        (["fine", "   "], r"queries\[1\] is an empty string"),
        (["fine", None], r"queries\[1\] must be a str, got NoneType"),
        ([3], r"queries\[0\] must be a str, got int"),
        (None, "must be a list of strings"),
    ],
)
def test_bad_queries_raise(model, texts, message):
    with pytest.raises(ValueError, match=message):
        model.encode_queries(texts)


def test_bad_passages_and_titles_raise(model):
    with pytest.raises(ValueError, match=r"passages\[0\] is an empty string"):
        model.encode_passages([""])
    with pytest.raises(ValueError, match="one title per passage"):
        model.encode_passages(["a", "b"], titles=["only one"])
    with pytest.raises(ValueError, match=r"titles\[0\] must be a str"):
        model.encode_passages(["a"], titles=[None])
    with pytest.raises(ValueError, match="batch_size"):
        model.encode_passages(["a"], batch_size=0)


def test_text_empty_after_tokenization_raises_instead_of_zero_vector(model):
    # A zero-width space tokenizes to nothing: the mean would be 0/0.
    with pytest.raises(ValueError, match="no token after the first 4"):
        model.encode_passages(["\u200b"])


def test_empty_after_tokenization_error_names_the_input_position(model):
    # Batches are length-sorted, so the error must map the batch row back to the caller's position (2 here).
    texts = ["a long passage about dense retrieval and distillation", "short one", "\u200b", "another passage"]
    with pytest.raises(ValueError, match=r"passages at positions \[2\]"):
        model.encode_passages(texts, batch_size=2)


def test_pool_checks_empty_rows_itself(model):
    hidden = torch.randn(2, 6, 32)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    with pytest.raises(ValueError, match=r"rows at positions \[1\]"):
        model.pool(hidden, mask)
    expected = hidden[0, 4:].mean(dim=0)
    torch.testing.assert_close(model.pool(hidden[:1], mask[:1])[0], expected)


def test_empty_list_gives_empty_array(model):
    assert model.encode_queries([]).shape == (0, 32)


def test_without_tokenizer_the_error_says_how_to_fix(checkpoint):
    config = TCTConfig.from_pretrained(str(checkpoint))
    with pytest.raises(ValueError, match="model.tokenizer = AutoTokenizer"):
        TCTModel(config).encode_queries(["a"])


def test_not_a_checkpoint_directory_raises_oserror(tmp_path):
    with pytest.raises(OSError, match="no config.json"):
        TCTModel.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(OSError, match="no model.safetensors"):
        TCTModel.from_pretrained(str(tmp_path))
    with pytest.raises(OSError, match="does not exist"):
        TCTModel.from_pretrained(str(tmp_path / "missing"))


@pytest.mark.parametrize(
    "field, value", [("pooling_start", -1), ("query_max_length", 4), ("similarity", "cosine"), ("query_max_length", 0)]
)
def test_config_validation(field, value):
    with pytest.raises(ValueError, match=field):
        TCTConfig(**{field: value})


def test_config_format_helpers():
    config = TCTConfig(query_max_length=6)
    assert config.format_queries(["heat"]) == ["[CLS] [Q] heat" + "[MASK]" * 6]
    assert config.format_passages(["water boils"], titles=["heat"]) == ["[CLS] [D] heat water boils"]
    assert config.format_passages(["water boils"]) == ["[CLS] [D] water boils"]


@pytest.mark.comparison
def test_normalized_student_equals_normalized_pyserini_and_sentence_transformers(checkpoint, reference, tmp_path):
    """normalize=True: the Pyserini embeddings divided by their L2 norm, for our class and for the saved copy loaded
    by sentence-transformers (whose modules then end with Normalize and whose similarity is cosine)."""
    from sentence_transformers import SentenceTransformer

    config = TCTConfig.from_pretrained(str(checkpoint), normalize=True)
    model = TCTModel.from_pretrained(str(checkpoint), config=config)
    bert, tokenizer = reference
    raw_q = pyserini_query_embeddings(bert, tokenizer, QUERIES)
    raw_p = pyserini_passage_embeddings(bert, tokenizer, PASSAGES, TITLES)
    expected_q = raw_q / np.linalg.norm(raw_q, axis=1, keepdims=True)
    expected_p = raw_p / np.linalg.norm(raw_p, axis=1, keepdims=True)
    assert not np.allclose(np.linalg.norm(raw_q, axis=1), 1.0, atol=1e-3)  # normalisation really changes them
    np.testing.assert_allclose(model.encode_queries(QUERIES), expected_q, atol=1e-5)
    np.testing.assert_allclose(model.encode_passages(PASSAGES, titles=TITLES), expected_p, atol=1e-5)
    model.save_pretrained(str(tmp_path))
    st = SentenceTransformer(str(tmp_path))
    assert type(st[-1]).__name__ == "Normalize" and st.similarity_fn_name == "cosine"
    np.testing.assert_allclose(st.encode_query(QUERIES), expected_q, atol=1e-5)
