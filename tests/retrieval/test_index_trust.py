"""An index knows what built it and what it holds: the model's fingerprint (weights, conventions, dtype) and the
files' checksums are recorded; search and mine-negatives refuse another model of the same dimension (unless
--allow-model-mismatch), a garbled index.faiss, and non-finite vectors; an index written before format 2 loads with
a warning."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest
from utils import write_tiny_bert

from tct_hf.cli import main
from tct_hf.modeling_tct import TCTModel
from tct_hf.retrieval.encoders import load_encoder
from tct_hf.retrieval.fingerprint import encoder_fingerprint
from tct_hf.retrieval.index import IndexFormatError, ModelMismatchError, build_index, load_index, save_index


def cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(arg) for arg in args])
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trust")
    write_tiny_bert(root / "bert")
    write_tiny_bert(root / "other", seed=1)  # same architecture and dimension, other weights
    student = TCTModel.from_pretrained(str(root / "bert"))
    student.config.passage_max_length = 64  # same weights, another convention
    student.save_pretrained(str(root / "conventions"))
    docs = ["river water", "paris france", "heart blood", "car engine", "war history", "music film"]
    (root / "corpus.tsv").write_text("".join(f"d{i}\t{text}\n" for i, text in enumerate(docs)))
    (root / "queries.tsv").write_text("q1\tcapital of france\nq2\tblood cell\n")
    (root / "qrels.txt").write_text("q1 0 d1 1\nq2 0 d2 1\n")
    assert cli("encode", "--model", root / "bert", "--corpus", root / "corpus.tsv", "--output", root / "index")[0] == 0
    return root


def test_fingerprint_is_stable_and_tells_models_apart(work):
    first = encoder_fingerprint(load_encoder(work / "bert", device="cpu"))
    again = encoder_fingerprint(load_encoder(str(work / "bert") + "/", device="cpu"))  # another spelling, same model
    other = encoder_fingerprint(load_encoder(work / "other", device="cpu"))
    conventions = encoder_fingerprint(load_encoder(work / "conventions", device="cpu"))
    half = encoder_fingerprint(load_encoder(work / "bert", device="cpu", dtype="bfloat16"))
    assert first == again
    assert len({f["fingerprint"] for f in (first, other, conventions, half)}) == 4
    assert conventions["weights_sha256"] == first["weights_sha256"]
    assert conventions["conventions"]["passage_max_length"] == 64 and first["conventions"]["passage_max_length"] == 512
    assert (first["dtype"], half["dtype"]) == ("float32", "bfloat16")
    assert encoder_fingerprint(object()) is None


def test_index_records_model_and_checksums(work):
    metadata = json.loads((work / "index" / "metadata.json").read_text())
    fingerprint = encoder_fingerprint(load_encoder(work / "bert", device="cpu"))
    assert metadata["format_version"] == 2
    assert metadata["model"]["name"] == str(work / "bert")
    assert metadata["model"]["dim"] == 32 and metadata["count"] == 6
    assert metadata["model"]["fingerprint"] == fingerprint["fingerprint"]
    for name in ("index.faiss", "docids.txt"):
        assert metadata["checksums"][name] == hashlib.sha256((work / "index" / name).read_bytes()).hexdigest()


def arguments(work: Path, command: str, model: str, output: Path) -> list:
    common = [
        "--model",
        work / model,
        "--index",
        work / "index",
        "--queries",
        work / "queries.tsv",
        "--output",
        output,
    ]
    if command == "search":
        return ["search", *common]
    return ["mine-negatives", *common, "--qrels", work / "qrels.txt", "--corpus", work / "corpus.tsv", "--depth", 4]


@pytest.mark.parametrize("command", ["search", "mine-negatives"])
@pytest.mark.parametrize(
    "model, detail", [("other", "has fingerprint"), ("conventions", "same weights, other conventions")]
)
def test_search_and_mining_refuse_another_model(work, tmp_path, command, model, detail, caplog):
    status, _, err = cli(*arguments(work, command, model, tmp_path / "out"))
    assert status == 2 and "was built by model" in err and detail in err and "--allow-model-mismatch" in err, err
    assert not (tmp_path / "out").exists()
    with caplog.at_level(logging.WARNING, logger="tct_hf.retrieval.index"):
        status, _, err = cli(*arguments(work, command, model, tmp_path / "out"), "--allow-model-mismatch")
    assert status == 0, err
    assert "(allowed)" in caplog.text


def test_same_model_in_another_dtype_names_the_dtype(work, tmp_path):
    status, _, err = cli(*arguments(work, "search", "bert", tmp_path / "run.trec"), "--dtype", "bfloat16")
    assert status == 2 and "--dtype float32" in err, err
    assert cli(*arguments(work, "search", "bert", tmp_path / "run.trec"))[0] == 0


def test_garbled_index_is_refused(work, tmp_path):
    garbled = tmp_path / "index"
    shutil.copytree(work / "index", garbled)
    data = bytearray((garbled / "index.faiss").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the vectors
    (garbled / "index.faiss").write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match="index.faiss: its content does not match the SHA-256"):
        load_index(garbled)
    status, _, err = cli("search", "--model", work / "bert", "--index", garbled, "--queries", work / "queries.tsv",
                         "--output", tmp_path / "run.trec")  # fmt: skip
    assert status == 2 and "does not match the SHA-256" in err
    assert not (tmp_path / "run.trec").exists()


def write_unchecked_index(directory: Path, vectors: np.ndarray) -> None:
    """An index folder as format 1 wrote it: no model record, no checksums."""
    directory.mkdir()
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    faiss.write_index(flat, str(directory / "index.faiss"))
    (directory / "docids.txt").write_text("".join(f"d{i}\n" for i in range(len(vectors))))
    metadata = {"format_version": 1, "dim": vectors.shape[1], "count": len(vectors), "kind": "flat", "metric": "ip",
                "model_name": "old", "extra": {}}  # fmt: skip
    (directory / "metadata.json").write_text(json.dumps(metadata))


def test_non_finite_vectors_are_refused_on_build_and_on_load(tmp_path):
    vectors = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    vectors[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity \(1 rows, first: row 3, docid 'd3'\)"):
        build_index(vectors, [f"d{i}" for i in range(5)])
    write_unchecked_index(tmp_path / "nan", vectors)
    with pytest.raises(IndexFormatError, match=r"vector 3 \(line 4 of docids.txt\) holds NaN or infinity"):
        load_index(tmp_path / "nan")


def test_old_index_loads_with_warnings(work, tmp_path, caplog):
    vectors = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    write_unchecked_index(tmp_path / "old", vectors)
    with caplog.at_level(logging.WARNING, logger="tct_hf.retrieval.index"):
        index = load_index(tmp_path / "old")
        index.check_model(encoder_fingerprint(load_encoder(work / "bert", device="cpu")))
    assert index.count == 5 and index.model_fingerprint is None
    assert "without checksums" in caplog.text and "records no model fingerprint" in caplog.text


def test_library_index_round_trip_keeps_the_fingerprint(work, tmp_path):
    encoder = load_encoder(work / "bert", device="cpu")
    fingerprint = encoder_fingerprint(encoder)
    vectors = encoder.encode_passages(["a b", "c d"])
    save_index(build_index(vectors, ["x", "y"], model_fingerprint=fingerprint), tmp_path / "index")
    loaded = load_index(tmp_path / "index")
    assert loaded.model_fingerprint == fingerprint
    loaded.check_model(fingerprint)
    with pytest.raises(ModelMismatchError):
        loaded.check_model(encoder_fingerprint(load_encoder(work / "other", device="cpu")))
