"""Encoder loading: the detection rule, TCT conventions on a plain BERT (against a hand implementation of
Pyserini's encoder), and the sentence-transformers path (against `SentenceTransformer.encode_*` itself)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
from transformers import BertModel, BertTokenizer
from utils import write_tiny_bert

from tct_hf.retrieval.encoders import SentenceTransformerEncoder, detect_encoder_type, load_encoder

PASSAGES = ["the river flow of water", "paris is the capital of france", "heat and air pressure in a wing"]
QUERIES = ["capital of france", "what is the heat of water"]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="module")
def st_dir(tmp_path_factory, bert_dir):
    """A sentence-transformers directory built from stock modules (mean pooling, no prompts)."""
    transformer = Transformer(str(bert_dir))
    pooling = Pooling(transformer.get_embedding_dimension(), "mean")
    model = SentenceTransformer(modules=[transformer, pooling], device="cpu")
    directory = tmp_path_factory.mktemp("st")
    model.save(str(directory))
    return directory


def pyserini_passages(directory, texts: list[str]) -> np.ndarray:
    """Reference written from Pyserini's TctColBertDocumentEncoder rules, not from our code."""
    tokenizer = BertTokenizer.from_pretrained(str(directory))
    model = BertModel.from_pretrained(str(directory)).eval()
    batch = tokenizer(
        ["[CLS] [D] " + text for text in texts],
        max_length=512,
        padding="longest",
        truncation=True,
        add_special_tokens=False,
        return_tensors="pt",
    )
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state[:, 4:, :]
    mask = batch["attention_mask"][:, 4:].unsqueeze(-1).float()
    return ((hidden * mask).sum(1) / mask.sum(1)).numpy()


def pyserini_queries(directory, texts: list[str]) -> np.ndarray:
    tokenizer = BertTokenizer.from_pretrained(str(directory))
    model = BertModel.from_pretrained(str(directory)).eval()
    batch = tokenizer(
        ["[CLS] [Q] " + text + "[MASK]" * 36 for text in texts],
        max_length=36,
        truncation=True,
        add_special_tokens=False,
        return_tensors="pt",
    )
    with torch.no_grad():
        return model(**batch).last_hidden_state[:, 4:, :].mean(1).numpy()


def test_detection_rule(tmp_path, bert_dir, st_dir):
    assert detect_encoder_type(bert_dir) == "tct"  # plain config.json
    assert detect_encoder_type(st_dir) == "sentence-transformers"  # modules.json, plain BERT config
    student = tmp_path / "student"
    student.mkdir()
    (student / "modules.json").write_text("[]")
    (student / "config.json").write_text(json.dumps({"model_type": "bert", "pooling_start": 4, "query_prefix": "x"}))
    assert detect_encoder_type(student) == "tct"  # a student ships modules.json too, its own class wins
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "modules.json").write_text("[]")
    (remote / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "modeling_tct.TCTModel"}}))
    assert detect_encoder_type(remote) == "tct"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OSError, match="not a model checkpoint"):
        detect_encoder_type(empty)
    with pytest.raises(OSError, match="not a model checkpoint"):
        load_encoder(empty)
    with pytest.raises(OSError, match="no such model directory"):
        load_encoder(tmp_path / "missing")


def test_plain_bert_uses_tct_conventions(bert_dir):
    encoder = load_encoder(bert_dir, device="cpu")
    passages = encoder.encode_passages(PASSAGES, titles=None, batch_size=2)
    queries = encoder.encode_queries(QUERIES, batch_size=2)
    assert passages.dtype == np.float32 and queries.dtype == np.float32
    np.testing.assert_allclose(passages, pyserini_passages(bert_dir, PASSAGES), atol=1e-5)
    np.testing.assert_allclose(queries, pyserini_queries(bert_dir, QUERIES), atol=1e-5)


def test_sentence_transformers_directory_matches_encode_document(st_dir):
    encoder = load_encoder(st_dir, device="cpu")
    assert isinstance(encoder, SentenceTransformerEncoder)
    reference = SentenceTransformer(str(st_dir), device="cpu")
    np.testing.assert_allclose(
        encoder.encode_passages(PASSAGES, batch_size=2), reference.encode_document(PASSAGES), atol=1e-6
    )
    np.testing.assert_allclose(
        encoder.encode_queries(QUERIES, batch_size=2), reference.encode_query(QUERIES), atol=1e-6
    )
    titled = encoder.encode_passages(PASSAGES, titles=["water", "", "wing"], batch_size=2)
    expected = reference.encode_document(["water " + PASSAGES[0], PASSAGES[1], "wing " + PASSAGES[2]])
    np.testing.assert_allclose(titled, expected, atol=1e-6)
    assert encoder.embedding_dim == 32


def test_encoder_type_flag_overrides_detection(st_dir):
    """The ST directory's root holds the BERT weights, so `tct` reads it with TCT conventions instead."""
    forced = load_encoder(st_dir, device="cpu", encoder_type="tct")
    np.testing.assert_allclose(
        forced.encode_passages(PASSAGES[:2], batch_size=2), pyserini_passages(st_dir, PASSAGES[:2]), atol=1e-5
    )
    with pytest.raises(ValueError, match="encoder_type"):
        load_encoder(st_dir, encoder_type="colbert")
    with pytest.raises(ValueError, match="dtype"):
        load_encoder(st_dir, dtype="float8")


def test_saved_student_loads_as_tct_and_as_sentence_transformers(bert_dir, tmp_path):
    from tct_hf.modeling_tct import TCTModel

    TCTModel.from_pretrained(str(bert_dir)).save_pretrained(str(tmp_path / "student"))
    assert (tmp_path / "student" / "modules.json").is_file()
    assert detect_encoder_type(tmp_path / "student") == "tct"
    student = load_encoder(tmp_path / "student", device="cpu")
    assert isinstance(student, TCTModel)
    expected = pyserini_passages(bert_dir, PASSAGES)
    np.testing.assert_allclose(student.encode_passages(PASSAGES), expected, atol=1e-5)
    as_st = load_encoder(tmp_path / "student", device="cpu", encoder_type="sentence-transformers")
    assert isinstance(as_st, SentenceTransformerEncoder)
    np.testing.assert_allclose(as_st.encode_passages(PASSAGES), expected, atol=1e-5)
    np.testing.assert_allclose(as_st.encode_queries(QUERIES), pyserini_queries(bert_dir, QUERIES), atol=1e-5)
