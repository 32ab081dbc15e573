"""examples/train_tct.py on documents (FirstP) with tiny random BERTs, and the document preset against the passage
preset."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "tests"))

import train_tct  # noqa: E402
from utils import write_tiny_bert  # noqa: E402

from tct_hf.data import load_collection, qrels_to_dict, sample_paths  # noqa: E402
from tct_hf.training import load_training_data  # noqa: E402

TINY = ["--per_device_train_batch_size", "4", "--bf16", "false", "--use_cpu", "true", "--logging_steps", "1"]


@pytest.fixture(scope="module")
def documents(tmp_path_factory) -> dict[str, Path]:
    """msmarco-docs.tsv-style documents (docid, url, title, body) built from the sample's real passages: each
    document's title is its first passage's first four words, its body two passages; doc-level qrels and a run."""
    paths = sample_paths()
    collection = load_collection(paths["collection"])
    qrels = qrels_to_dict(paths["qrels_train"])
    qids = sorted(qrels)[:3]
    judged = [d for q in qids for d in sorted(qrels[q])[:3]]
    others = [d for d in collection["id"][:40] if d not in set(judged)]
    texts = dict(zip(collection["id"], collection["text"]))
    folder = tmp_path_factory.mktemp("docs")
    lines, doc_of = [], {}
    for i, pid in enumerate(judged + others):
        docid = f"D{i}"
        doc_of[pid] = docid
        filler = texts[others[(i + 7) % len(others)]]
        lines.append(f"{docid}\thttp://example.com/{docid}\t{' '.join(texts[pid].split()[:4])}\t{texts[pid]} {filler}")
    (folder / "msmarco-docs.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    queries = dict(line.split("\t", 1) for line in Path(paths["queries_train"]).read_text().splitlines())
    (folder / "queries.tsv").write_text("".join(f"{q}\t{queries[q]}\n" for q in qids), encoding="utf-8")
    rows = [f"{q} 0 {doc_of[d]} 1" for q in qids for d in sorted(qrels[q])[:3]]
    (folder / "qrels.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    run = [f"{q} Q0 D{j} {r + 1} {-r} IndriQueryLikelihood" for q in qids for r, j in enumerate(range(5, 25))]
    (folder / "top100").write_text("\n".join(run) + "\n", encoding="utf-8")
    files = {"collection": "msmarco-docs.tsv", "queries": "queries.tsv", "qrels": "qrels.tsv", "run": "top100"}
    return {name: folder / file for name, file in files.items()}


def test_document_examples_are_firstp_texts_with_negatives_from_the_run(documents):
    data = train_tct.DataArguments(
        collection=str(documents["collection"]), train_queries=str(documents["queries"]),
        train_qrels=str(documents["qrels"]), train_negatives_run=str(documents["run"]), min_relevance=1,
        negatives_depth=100,
    )  # fmt: skip
    train, _, _, uses_sample = load_training_data(data, seed=0, num_negatives=1, text_tokens=20)
    assert data.documents and not uses_sample
    fields = {line.split("\t")[0]: line.split("\t") for line in documents["collection"].read_text().splitlines()}
    for example in train:
        _, _, title, body = fields[example["positive_id"]]
        assert example["positive"] == " ".join(f"{title} {body}".split()[:20])  # FirstP: title first, cut
        assert example["negative_ids"][0] in {f"D{j}" for j in range(5, 25)}  # from the given run, not BM25
    assert len(train) == 9


def test_train_tct_on_documents_warm_started_from_a_passage_student(documents, tmp_path):
    passage_student = write_tiny_bert(tmp_path / "passage_student", seed=3)
    out = tmp_path / "doc_student"
    results = train_tct.main(
        [
            "--student_model", str(passage_student), "--output_dir", str(out), "--max_steps", "2",
            "--collection", str(documents["collection"]), "--train_queries", str(documents["queries"]),
            "--train_qrels", str(documents["qrels"]), "--train_negatives_run", str(documents["run"]),
            "--min_relevance", "1", "--negatives_depth", "100", "--passage_max_length", "60",
            "--dev_collection", str(documents["collection"]), "--dev_queries", str(documents["queries"]),
            "--dev_qrels", str(documents["qrels"]), "--teacher_train_steps", "2", "--teacher_dim", "16",
            "--teacher_batch_size", "4", "--teacher_autocast_dtype", "float32", *TINY,
        ]
    )  # fmt: skip
    assert set(results["student_after"]) == {"RR@100", "RR@10", "nDCG@10", "R@100"}
    assert all(0.0 <= value <= 1.0 for value in results["student_after"].values())
    assert (out / "model.safetensors").is_file()
    assert json.loads((out / "retrieval_metrics.json").read_text())["student_after"] == results["student_after"]


def test_document_preset_is_the_passage_preset_with_batch_64_and_512_tokens():
    import yaml

    passages = yaml.safe_load((ROOT / "examples/configs/paper.yaml").read_text())
    docs = yaml.safe_load((ROOT / "examples/configs/paper_docs.yaml").read_text())
    assert docs["per_device_train_batch_size"] == 64
    assert docs["passage_max_length"] + 4 == 512  # FirstP: 512 tokens in all, the 4-token prefix included
    different = {"per_device_train_batch_size", "passage_max_length", "student_model", "train_triples", "output_dir"}
    for key, value in passages.items():
        if key not in different:
            assert docs[key] == value, key
    from transformers import HfArgumentParser

    parser = HfArgumentParser((train_tct.ModelArguments, train_tct.DataArguments, train_tct.TCTTrainingArguments))
    _, data_args, training_args = parser.parse_dict({**docs, "bf16": False, "use_cpu": True})  # no bf16 CPU here
    assert training_args.per_device_train_batch_size == 64 and training_args.passage_max_length == 508
    assert data_args.train_negatives_run.endswith("msmarco-doctrain-top100")
