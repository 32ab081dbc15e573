"""The example scripts end to end on the embedded MS MARCO sample, with tiny random BERTs (seconds, not minutes)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "tests"))

import train_colbert  # noqa: E402
import train_tct  # noqa: E402
from utils import write_tiny_bert  # noqa: E402

import tct_hf.hub.push as push_module  # noqa: E402
from tct_hf.training import parse_script_arguments  # noqa: E402

TINY = ["--per_device_train_batch_size", "4", "--bf16", "false", "--use_cpu", "true", "--logging_steps", "1"]


@pytest.fixture(scope="module")
def small_dev(tmp_path_factory) -> list[str]:
    """Held-out files cut from the sample: 2 dev queries, their judged passages and 40 others (fast to encode)."""
    from tct_hf.data import load_collection, qrels_to_dict, sample_paths

    paths = sample_paths()
    qrels = qrels_to_dict(paths["qrels_dev"])
    qids = sorted(qrels)[:2]
    judged = {docid for qid in qids for docid in list(qrels[qid])[:20]}
    collection = load_collection(paths["collection"])
    keep = [i for i, docid in enumerate(collection["id"]) if docid in judged or i < 40]
    folder = tmp_path_factory.mktemp("dev")
    lines = [f"{collection[i]['id']}\t{collection[i]['text']}" for i in keep]
    (folder / "collection.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    queries = dict(line.split("\t", 1) for line in Path(paths["queries_dev"]).read_text().splitlines())
    (folder / "queries.tsv").write_text("".join(f"{q}\t{queries[q]}\n" for q in qids), encoding="utf-8")
    kept = {collection[i]["id"] for i in keep}
    rows = [f"{q} 0 {d} {r}" for q in qids for d, r in qrels[q].items() if d in kept]
    (folder / "qrels.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return ["--dev_collection", str(folder / "collection.tsv"), "--dev_queries", str(folder / "queries.tsv"),
            "--dev_qrels", str(folder / "qrels.txt")]  # fmt: skip


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("backbone") / "bert", seed=5)


def test_train_tct_demo_path_trains_evaluates_saves_and_pushes(backbone, small_dev, tmp_path, monkeypatch):
    uploads = []

    class RecordingApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kwargs):
            uploads.append(("create", repo_id))

        def upload_folder(self, repo_id, folder_path, **kwargs):
            uploads.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
            return "https://huggingface.co/fake/commit"

    monkeypatch.setattr(push_module, "HfApi", RecordingApi)
    out = tmp_path / "student"
    results = train_tct.main(
        [
            "--student_model", str(backbone), "--output_dir", str(out), "--max_steps", "2",
            "--teacher_train_steps", "2", "--teacher_dim", "16", "--teacher_batch_size", "4",
            "--teacher_autocast_dtype", "float32", "--push_to_hub", "true", "--hub_model_id", "me/tct-tiny",
            *small_dev, *TINY,
        ]
    )  # fmt: skip
    assert set(results) == {"student_before", "teacher", "student_after"}
    for metrics in results.values():
        assert set(metrics) == {"nDCG@10", "RR@10", "R@100"}
        assert all(0.0 <= value <= 1.0 for value in metrics.values())
    saved = json.loads((out / "retrieval_metrics.json").read_text())
    assert saved["student_after"] == results["student_after"]
    assert (out / "model.safetensors").is_file() and (out / "modules.json").is_file()
    assert (out / "teacher" / "model.safetensors").is_file()  # the fine-tuned teacher, saved apart
    assert uploads[0] == ("create", "me/tct-tiny")
    assert {"README.md", "config.json", "model.safetensors", "modeling_tct.py"} <= set(uploads[1][2])


def test_train_tct_without_teacher_and_train_colbert(backbone, small_dev, tmp_path):
    results = train_tct.main(
        ["--student_model", str(backbone), "--output_dir", str(tmp_path / "none"), "--max_steps", "2",
         "--kd_mode", "none", *small_dev, *TINY]
    )  # fmt: skip
    assert set(results) == {"student_before", "student_after"}
    teacher_results = train_colbert.main(
        ["--backbone", str(backbone), "--output_dir", str(tmp_path / "colbert"), "--max_steps", "2", "--dim", "16",
         *small_dev, *TINY]
    )  # fmt: skip
    assert set(teacher_results) == {"teacher_before", "teacher_after"}
    assert (tmp_path / "colbert" / "model.safetensors").is_file()


def test_bad_arguments_fail_clearly(backbone, tmp_path):
    with pytest.raises(ValueError, match="kd_mode must be one of"):
        train_tct.main(["--student_model", str(backbone), "--output_dir", str(tmp_path), "--kd_mode", "bogus", *TINY])
    with pytest.raises(FileNotFoundError):
        train_tct.main(["--train_triples", str(tmp_path / "missing.tsv"), "--output_dir", str(tmp_path), *TINY])


def parse_tct_arguments(argv: list[str]) -> tuple:
    """train_tct.py's command line, parsed as its main() does."""
    types = (train_tct.ModelArguments, train_tct.DataArguments, train_tct.TCTTrainingArguments)
    return parse_script_arguments(argv, types, train_tct.DEMO_DEFAULTS)


def test_save_steps_alone_saves_checkpoints_and_contradictions_are_refused(tmp_path):
    out = ["--output_dir", str(tmp_path / "out")]
    _, _, args = parse_tct_arguments(["--save_steps", "2", *out])
    assert str(args.save_strategy.value) == "steps" and args.save_steps == 2  # the demo default "no" saved nothing
    _, _, args = parse_tct_arguments(["--save-steps=3", *out])
    assert str(args.save_strategy.value) == "steps" and args.save_steps == 3
    _, _, args = parse_tct_arguments(out)
    assert str(args.save_strategy.value) == "no"  # the demo keeps its default without --save_steps
    with pytest.raises(SystemExit, match="would write no checkpoint"):
        parse_tct_arguments(["--save_steps", "2", "--save_strategy", "no", *out])
    colbert = train_colbert
    colbert_types = (colbert.TeacherArguments, colbert.DataArguments, colbert.ColBERTTrainingArguments)
    _, _, args = parse_script_arguments(["--save_steps", "4", *out], colbert_types, colbert.COLBERT_DEMO_DEFAULTS)
    assert str(args.save_strategy.value) == "steps"


def test_a_non_empty_output_dir_is_refused_unless_meant(tmp_path):
    (tmp_path / "previous").mkdir()
    (tmp_path / "previous" / "model.safetensors").write_bytes(b"a previous run's model")
    out = ["--output_dir", str(tmp_path / "previous")]
    with pytest.raises(SystemExit, match="already exists and is not empty"):
        parse_tct_arguments(out)
    with pytest.raises(SystemExit, match="--overwrite_output_dir"):
        train_colbert.main([*out, "--max_steps", "1"])
    assert parse_tct_arguments([*out, "--overwrite_output_dir"])[1].overwrite_output_dir
    parse_tct_arguments([*out, "--resume_from_checkpoint", str(tmp_path / "previous")])
    (tmp_path / "empty").mkdir()
    parse_tct_arguments(["--output_dir", str(tmp_path / "empty")])
    assert (tmp_path / "previous" / "model.safetensors").read_bytes() == b"a previous run's model"
