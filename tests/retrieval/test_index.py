"""Index build / save / load / merge: round trips, validation, crash-safe saving, shard merge == one pass."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from tct_hf.retrieval import index as index_module
from tct_hf.retrieval.index import IndexFormatError, build_index, load_index, merge_index_shards, save_index
from tct_hf.retrieval.search import search


@pytest.fixture
def corpus():
    rng = np.random.default_rng(0)
    return rng.standard_normal((120, 16)).astype(np.float32), [f"p{i}" for i in range(120)]


@pytest.mark.parametrize("kind", ["flat", "fp16", "hnsw"])
def test_save_load_round_trip(tmp_path, corpus, kind):
    vectors, docids = corpus
    built = build_index(vectors, docids, kind=kind, model_name="tiny", extra={"max_length": 154})
    save_index(built, tmp_path / "index")
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == ["docids.txt", "index.faiss", "metadata.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]  # no temporary folder left behind
    metadata = json.loads((tmp_path / "index" / "metadata.json").read_text())
    assert metadata["dim"] == 16 and metadata["count"] == 120 and metadata["kind"] == kind
    assert metadata["model_name"] == "tiny" and metadata["extra"] == {"max_length": 154}
    loaded = load_index(tmp_path / "index", expected_dim=16)
    assert loaded.docids == docids and loaded.kind == kind and loaded.model_name == "tiny"
    queries = vectors[:5] + 0.01
    assert search(loaded, queries, list("abcde"), k=20) == search(built, queries, list("abcde"), k=20)


def test_flat_index_stores_exact_vectors(corpus):
    vectors, docids = corpus
    np.testing.assert_array_equal(build_index(vectors, docids).faiss_index.reconstruct_n(0, 120), vectors)
    half = build_index(vectors, docids, kind="fp16").faiss_index.reconstruct_n(0, 120)
    np.testing.assert_array_equal(half, vectors.astype(np.float16).astype(np.float32))


def test_save_refuses_to_overwrite_unless_asked(tmp_path, corpus):
    vectors, docids = corpus
    save_index(build_index(vectors, docids), tmp_path / "index")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_index(build_index(vectors[:3], docids[:3]), tmp_path / "index")
    save_index(build_index(vectors[:3], docids[:3]), tmp_path / "index", overwrite=True)
    assert load_index(tmp_path / "index").count == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]


@pytest.mark.parametrize("existing", [False, True])
def test_crash_mid_save_leaves_nothing_loadable_and_old_index_intact(tmp_path, corpus, monkeypatch, existing):
    vectors, docids = corpus
    target = tmp_path / "index"
    if existing:
        save_index(build_index(vectors[:7], docids[:7]), target)
    real_write_index = faiss.write_index

    def write_then_crash(index, path):
        real_write_index(index, path)  # the big file is on disk, docids/metadata are not yet
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(index_module._faiss(), "write_index", write_then_crash)
    with pytest.raises(KeyboardInterrupt):
        save_index(build_index(vectors, docids), target, overwrite=True)
    monkeypatch.undo()
    if existing:
        assert load_index(target).docids == docids[:7]  # the old index survives untouched
        assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
    else:
        assert not target.exists()
        assert list(tmp_path.iterdir()) == []  # temporary folder cleaned up
        with pytest.raises(FileNotFoundError, match="no such index folder"):
            load_index(target)


def test_half_written_folder_fails_to_load_cleanly(tmp_path, corpus):
    vectors, docids = corpus
    save_index(build_index(vectors, docids), tmp_path / "index")
    (tmp_path / "index" / "metadata.json").unlink()
    with pytest.raises(IndexFormatError, match="missing metadata.json"):
        load_index(tmp_path / "index")


def test_load_detects_count_and_dimension_mismatch(tmp_path, corpus):
    vectors, docids = corpus
    save_index(build_index(vectors, docids, model_name="m16"), tmp_path / "index")
    with pytest.raises(ValueError, match=r"dimension 768 but the index \(model 'm16'\) has dimension 16"):
        load_index(tmp_path / "index", expected_dim=768)
    docids_file = tmp_path / "index" / "docids.txt"
    docids_file.write_text("".join(f"{d}\n" for d in docids[:-1]))
    with pytest.raises(IndexFormatError, match="does not match the SHA-256"):  # the checksum sees it first
        load_index(tmp_path / "index")
    metadata_file = tmp_path / "index" / "metadata.json"
    metadata = json.loads(metadata_file.read_text())
    del metadata["checksums"]  # as an index written before format 2
    metadata_file.write_text(json.dumps(metadata))
    with pytest.raises(IndexFormatError, match="document counts disagree"):
        load_index(tmp_path / "index")


@pytest.mark.parametrize(
    "vectors, docids, message",
    [
        (np.zeros((0, 4)), [], "non-empty"),
        (np.ones((2, 4)), ["a"], "1 docids for 2 embeddings"),
        (np.ones((2, 4)), ["a", "a"], "duplicate docid 'a'"),
        (np.ones((2, 4)), ["a", "b c"], "whitespace"),
        (np.array([[1.0, np.inf]]), ["a"], "NaN or infinity"),
    ],
)
def test_build_rejects_bad_input(vectors, docids, message):
    with pytest.raises(ValueError, match=message):
        build_index(vectors, docids)


def test_build_rejects_unknown_kind_and_metric(corpus):
    vectors, docids = corpus
    with pytest.raises(ValueError, match="unknown index kind"):
        build_index(vectors, docids, kind="ivf")
    with pytest.raises(ValueError, match="metric 'l2'"):
        build_index(vectors, docids, metric="l2")


def test_gpu_request_without_gpu_is_explained(corpus):
    if faiss.get_num_gpus() > 0:
        pytest.skip("a GPU is present")
    vectors, docids = corpus
    with pytest.raises(RuntimeError, match="faiss sees no GPU"):
        build_index(vectors, docids, use_gpu=True)


@pytest.mark.parametrize("kind", ["flat", "fp16", "hnsw"])
@pytest.mark.parametrize("labelled", [True, False])
def test_merged_shards_equal_one_pass(tmp_path, corpus, kind, labelled):
    vectors, docids = corpus
    bounds = [(0, 50), (50, 51), (51, 120)]
    directories = []
    for shard, (start, stop) in enumerate(bounds):
        extra = {"shard": [shard, len(bounds)]} if labelled else {}
        built = build_index(vectors[start:stop], docids[start:stop], kind=kind, model_name="m", extra=extra)
        directories.append(save_index(built, tmp_path / f"shard{shard}"))
    if labelled:
        directories = directories[::-1]  # labels, not argument order, decide the order
    merged = merge_index_shards(directories, tmp_path / "merged")
    one_pass = build_index(vectors, docids, kind=kind, model_name="m")
    loaded = load_index(tmp_path / "merged")
    assert loaded.docids == docids and loaded.kind == kind and merged.count == 120
    assert "shard" not in loaded.extra
    np.testing.assert_array_equal(loaded.faiss_index.reconstruct_n(0, 120), one_pass.faiss_index.reconstruct_n(0, 120))
    queries = vectors[:10]
    qids = [str(i) for i in range(10)]
    merged_run, one_pass_run = search(loaded, queries, qids, k=10), search(one_pass, queries, qids, k=10)
    if kind == "hnsw":  # graphs differ with insertion history; results nearly agree
        overlap = np.mean([len(set(merged_run[q]) & set(one_pass_run[q])) / 10 for q in qids])
        assert overlap >= 0.9
    else:
        assert merged_run == one_pass_run


def test_merge_rejects_inconsistent_shards(tmp_path, corpus):
    vectors, docids = corpus
    save_index(build_index(vectors[:10], docids[:10], model_name="a"), tmp_path / "s0")
    save_index(build_index(vectors[10:20], docids[10:20], model_name="b"), tmp_path / "s1")
    save_index(build_index(vectors[:10], docids[:10], model_name="a"), tmp_path / "dup")
    with pytest.raises(ValueError, match="model_name 'b' differs"):
        merge_index_shards([tmp_path / "s0", tmp_path / "s1"], tmp_path / "out")
    with pytest.raises(ValueError, match="duplicate docid"):
        merge_index_shards([tmp_path / "s0", tmp_path / "dup"], tmp_path / "out")
    save_index(build_index(vectors[:10], docids[:10], extra={"shard": [0, 3]}), tmp_path / "l0")
    save_index(build_index(vectors[10:20], docids[10:20], extra={"shard": [2, 3]}), tmp_path / "l2")
    with pytest.raises(ValueError, match="do not cover"):
        merge_index_shards([tmp_path / "l0", tmp_path / "l2"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
