"""The HN+ pipeline end to end on tiny random BERTs and a small synthetic collection: stages and their records, a
failure after mining resumed without redoing earlier stages, a final student sentence-transformers loads (same
vectors as the library's encoder), a changed setting redoing only the stages it affects, and bad configurations
refused before any work."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tct_hf.evaluation import DEFAULT_METRICS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils import SPECIAL_TOKENS, WORDS, tiny_bert_config, write_tiny_bert  # noqa: E402

from tct_hf import ColBERTModel, TCTModel  # noqa: E402
from tct_hf.pipeline import PipelineConfig, PipelineConfigError, plan_stages, run_pipeline  # noqa: E402
from tct_hf.pipeline import stages as stage_module  # noqa: E402

NUM_PASSAGES, NUM_TRAIN, NUM_DEV = 90, 16, 5


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A collection of word-bag passages; each query is 3 words of its one relevant passage (grade 2)."""
    root = tmp_path_factory.mktemp("pipeline-data")
    rng = random.Random(0)
    passages = [" ".join(rng.sample(WORDS, 8)) for _ in range(NUM_PASSAGES)]
    (root / "collection.tsv").write_text("".join(f"p{i}\t{t}\n" for i, t in enumerate(passages)), encoding="utf-8")
    for split, qids in (("train", range(NUM_TRAIN)), ("dev", range(NUM_TRAIN, NUM_TRAIN + NUM_DEV))):
        queries = {f"q{i}": " ".join(passages[i].split()[:3]) for i in qids}
        (root / f"queries.{split}.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in queries.items()))
        (root / f"qrels.{split}.txt").write_text("".join(f"{q} 0 p{q[1:]} 2\n" for q in queries))
    write_tiny_bert(root / "bert", seed=4)
    return {
        "collection": root / "collection.tsv",
        "train_queries": root / "queries.train.tsv",
        "train_qrels": root / "qrels.train.txt",
        "dev_queries": root / "queries.dev.tsv",
        "dev_qrels": root / "qrels.dev.txt",
        "bert": root / "bert",
    }


def tiny_config(files, output_dir, **overrides) -> PipelineConfig:
    values = dict(
        output_dir=str(output_dir),
        student_model=str(files["bert"]),
        collection=str(files["collection"]),
        train_queries=str(files["train_queries"]),
        train_qrels=str(files["train_qrels"]),
        dev_queries=str(files["dev_queries"]),
        dev_qrels=str(files["dev_qrels"]),
        teacher_steps=2,
        warmup_student_steps=2,
        hn_teacher_steps=2,
        hn_student_steps=2,
        batch_size=4,
        teacher_dim=8,
        bm25_depth=20,
        mine_depth=10,
        query_max_length=8,
        passage_max_length=16,
        logging_steps=1,
        bf16=False,
        use_cpu=True,
    )
    values.update(overrides)
    return PipelineConfig(**values)


class Calls:
    """Stage functions that count their calls, one kind optionally failing (an injected crash)."""

    def __init__(self, fail: str | None = None):
        self.kinds: list[str] = []
        self.fail = fail

    def functions(self) -> dict:
        def wrap(kind, function):
            def run(context, stage_dir, inputs, resume):
                self.kinds.append(kind)
                if kind == self.fail:
                    (stage_dir / "partial-output").write_text("half done")
                    raise RuntimeError(f"injected crash in {kind}")
                return function(context, stage_dir, inputs, resume)

            return run

        return {kind: wrap(kind, function) for kind, function in stage_module.STAGE_FUNCTIONS.items()}


def stage_records(output_dir: Path) -> dict[str, dict]:
    return {path.parent.name: json.loads(path.read_text()) for path in sorted(output_dir.glob("*/stage.json"))}


def test_plan_names_refresh_rounds():
    names = [name for name, _, _ in plan_stages(PipelineConfig(refresh_rounds=1))]
    assert names == ["1-warmup", "2-mine", "3-teacher", "4-student", "5-mine-r1", "6-teacher-r1", "7-student-r1",
                     "8-final"]  # fmt: skip
    names = [name for name, _, _ in plan_stages(PipelineConfig(stages=["warmup", "mine", "student", "final"]))]
    assert names == ["1-warmup", "2-mine", "3-student", "4-final"]


def test_crash_after_mining_resumes_without_redoing_earlier_stages(files, tmp_path):
    from sentence_transformers import SentenceTransformer

    output = tmp_path / "run"
    crashed = Calls(fail="teacher")
    with pytest.raises(RuntimeError, match="injected crash in teacher"):
        run_pipeline(tiny_config(files, output, teacher_margin=0.0), stage_functions=crashed.functions())
    assert crashed.kinds == ["warmup", "mine", "teacher"]
    before = stage_records(output)
    assert sorted(before) == ["1-warmup", "2-mine"]  # the crashed stage left no stage.json
    assert (output / "3-teacher" / "partial-output").exists()
    mined = before["2-mine"]
    assert mined["metrics"]["mined_examples"] > 0 and "teacher_dropped_per_example" in mined["metrics"]
    assert set(before["1-warmup"]["metrics"]) >= {"student", "teacher", "bm25_examples"}

    resumed = Calls()
    report = run_pipeline(tiny_config(files, output, teacher_margin=0.0), stage_functions=resumed.functions())
    assert resumed.kinds == ["teacher", "student", "final"]  # warm-up and mining were not redone
    after = stage_records(output)
    for name in ("1-warmup", "2-mine"):
        assert after[name]["run_id"] == before[name]["run_id"]
    assert not (output / "3-teacher" / "partial-output").exists()  # the interrupted attempt was cleared, then redone
    assert [(s["name"], s["skipped"]) for s in report["stages"]] == [
        ("1-warmup", True), ("2-mine", True), ("3-teacher", False), ("4-student", False), ("5-final", False)
    ]  # fmt: skip
    assert json.loads((output / "report.json").read_text()) == report
    assert set(report["dev_metrics"]) == {"1-warmup", "3-teacher", "4-student", "5-final"}
    assert set(report["dev_metrics"]["5-final"]["student"]) == set(DEFAULT_METRICS)  # DevSet's default metrics
    # Inputs chain: the student stage read the teacher stage's output and the mined negatives.
    assert after["4-student"]["inputs"]["teacher"]["identity"] == after["3-teacher"]["run_id"]
    assert after["4-student"]["inputs"]["negatives"]["identity"] == after["2-mine"]["run_id"]

    # The final student loads in sentence-transformers and gives the library encoder's vectors.
    final = report["final_student"]
    assert final == str((output / "4-student" / "student").resolve())
    model = SentenceTransformer(final, device="cpu")
    texts = ["the river flow of water", "paris is the capital of france"]
    library = TCTModel.from_pretrained(final)
    np.testing.assert_allclose(model.encode_document(texts), library.encode_passages(texts), atol=1e-5)
    np.testing.assert_allclose(model.encode_query(texts), library.encode_queries(texts), atol=1e-5)

    # Unchanged: everything skipped. A changed student setting: only the student and final stages redone.
    again = Calls()
    assert all(s["skipped"] for s in run_pipeline(tiny_config(files, output, teacher_margin=0.0),
                                                  stage_functions=again.functions())["stages"])  # fmt: skip
    assert again.kinds == []
    # One refresh round added: the first round's stages are kept, the round and the final stage run.
    refreshed = Calls()
    report = run_pipeline(
        tiny_config(files, output, teacher_margin=0.0, refresh_rounds=1), stage_functions=refreshed.functions()
    )
    assert refreshed.kinds == ["mine", "teacher", "student", "final"]
    assert [s["name"] for s in report["stages"] if not s["skipped"]] == ["5-mine-r1", "6-teacher-r1", "7-student-r1",
                                                                         "8-final"]  # fmt: skip
    after = stage_records(output)
    assert after["5-mine-r1"]["inputs"]["student"]["identity"] == after["4-student"]["run_id"]
    assert after["6-teacher-r1"]["inputs"]["teacher"]["identity"] == after["3-teacher"]["run_id"]
    assert after["7-student-r1"]["inputs"]["negatives"]["identity"] == after["5-mine-r1"]["run_id"]
    assert report["final_student"] == str((output / "7-student-r1" / "student").resolve())


def write_foreign_teacher(directory: Path) -> Path:
    """A ColBERT teacher whose vocabulary holds only special tokens and Greek words: English reads as [UNK]."""
    from transformers import BertModel, BertTokenizer

    directory.mkdir(parents=True)
    (directory / "vocab.txt").write_text("\n".join(SPECIAL_TOKENS + ["[", "]", "q", "d", "ποταμός", "νερό"]) + "\n")
    tokenizer = BertTokenizer.from_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    torch.manual_seed(0)
    BertModel(tiny_bert_config(len(tokenizer))).save_pretrained(str(directory / "bert"))
    tokenizer.save_pretrained(str(directory / "bert"))
    ColBERTModel.from_pretrained(str(directory / "bert"), convention="tct", dim=8).save_pretrained(str(directory))
    return directory


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"stages": ["warmup", "mine", "distill"]}, "unknown stage 'distill'"),
        ({"stages": ["mine", "warmup"]}, "in the order warmup, mine"),
        ({"refresh_rounds": -1}, "refresh_rounds must be an integer >= 0"),
        ({"stages": ["mine", "student", "final"]}, "stage 1-mine needs a student: add 'warmup'"),
        ({"stages": ["warmup", "student"]}, "stage 2-student needs a negatives: add 'mine'"),
        ({"train_qrels": "/nowhere/qrels.txt"}, "train_qrels: /nowhere/qrels.txt is not a file"),
        ({"negatives": "hn++"}, "negatives='hn\\+\\+' is not one of"),
    ],
)
def test_bad_configurations_are_refused_before_any_work(files, tmp_path, overrides, message):
    calls = Calls()
    with pytest.raises(PipelineConfigError, match=message):
        run_pipeline(tiny_config(files, tmp_path / "run", **overrides), stage_functions=calls.functions())
    assert calls.kinds == [] and not (tmp_path / "run").exists()


def test_a_teacher_that_cannot_read_the_texts_is_refused_before_any_work(files, tmp_path):
    teacher = write_foreign_teacher(tmp_path / "greek-teacher")
    calls = Calls()
    with pytest.raises(
        PipelineConfigError, match=r"teacher_model .*reads \d+% of the mined queries' tokens as \[UNK\]"
    ):
        run_pipeline(
            tiny_config(files, tmp_path / "run", teacher_model=str(teacher)), stage_functions=calls.functions()
        )
    assert calls.kinds == [] and not (tmp_path / "run").exists()


def run_example(config_path: Path, *extra: str) -> subprocess.Popen:
    import os

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [sys.executable, str(root / "examples" / "train_tct_hn_plus.py"), str(config_path), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


@pytest.mark.slow
def test_example_killed_after_mining_resumes(files, tmp_path):
    """A real kill (SIGKILL once 2-mine/stage.json exists), then the same command again."""
    from sentence_transformers import SentenceTransformer

    output = tmp_path / "run"
    config = tiny_config(files, output, teacher_margin=0.0).to_dict()
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    process = run_example(config_path)
    deadline = time.monotonic() + 300
    while not (output / "2-mine" / "stage.json").exists():
        assert process.poll() is None and time.monotonic() < deadline, "the pipeline ended before mining finished"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = stage_records(output)
    assert {"1-warmup", "2-mine"} <= set(before) and "5-final" not in before

    process = run_example(config_path, "--output_dir", str(output))
    stdout, _ = process.communicate(timeout=600)
    assert process.returncode == 0
    report = json.loads(stdout[stdout.rindex('{\n  "output_dir"') :])  # the report is printed last
    after = stage_records(output)
    for name, record in before.items():  # every stage finished before the kill was skipped, not redone
        assert after[name]["run_id"] == record["run_id"]
        assert next(s for s in report["stages"] if s["name"] == name)["skipped"]
    assert sorted(after) == ["1-warmup", "2-mine", "3-teacher", "4-student", "5-final"]
    SentenceTransformer(report["final_student"], device="cpu").encode_query(["water river"])


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_run_every_stage(files, tmp_path):
    """`accelerate launch` with 2 gloo processes: every stage once (records written by the main process only), the
    corpus encoded in 2 shards and merged, and a rerun skipping everything."""
    import os

    from sentence_transformers import SentenceTransformer

    root = Path(__file__).resolve().parents[2]
    output = tmp_path / "run"
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(tiny_config(files, output, teacher_margin=0.0).to_dict()))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(root / "examples" / "train_tct_hn_plus.py"), str(config_path)]  # fmt: skip
    environment = {**os.environ, "ACCELERATE_USE_CPU": "true", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                   "PYTHONPATH": str(root), "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    for attempt in range(2):
        done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout[done.stdout.rindex('{\n  "output_dir"') :])
        assert [s["skipped"] for s in report["stages"]] == [attempt == 1] * 5
    assert done.stdout.count('"final_student"') == 1  # one report, from the main process
    assert sorted(stage_records(output)) == ["1-warmup", "2-mine", "3-teacher", "4-student", "5-final"]
    assert not list(output.glob("*/index/shard-*"))  # shards merged
    SentenceTransformer(report["final_student"], device="cpu").encode_query(["water river"])


def test_a_training_stage_interrupted_after_a_checkpoint_resumes_from_it(files, tmp_path, monkeypatch, caplog):
    """save_steps=1 and a crash in the warm-up student's second step: the rerun keeps the folder, loads the teacher
    the attempt saved and resumes the student from checkpoint-1 (Trainer reports the resumed step count)."""
    import logging

    from tct_hf.training import TCTTrainer

    output = tmp_path / "run"
    config = tiny_config(files, output, stages=["warmup", "final"], save_steps=1, warmup_student_steps=3)
    real_step = TCTTrainer.training_step

    def crash_at_second_step(self, *args, **kwargs):
        if self.state.global_step == 1:
            raise RuntimeError("injected crash at step 2")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(TCTTrainer, "training_step", crash_at_second_step)
    with pytest.raises(RuntimeError, match="injected crash at step 2"):
        run_pipeline(config)
    assert (output / "1-warmup" / "student-trainer" / "checkpoint-1").is_dir()
    teacher_saved = (output / "1-warmup" / "teacher" / "model.safetensors").stat().st_mtime_ns
    steps: list[int] = []

    def counted(self, *args, **kwargs):
        steps.append(self.state.global_step)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(TCTTrainer, "training_step", counted)
    with caplog.at_level(logging.INFO, logger="tct_hf.pipeline.runner"):
        report = run_pipeline(config)
    assert "stage 1-warmup: running (resuming its checkpoint)" in caplog.text
    assert steps == [1, 2]  # steps 2 and 3 only: step 1 came from the checkpoint
    assert (output / "1-warmup" / "teacher" / "model.safetensors").stat().st_mtime_ns == teacher_saved
    assert not (output / "1-warmup" / "student-trainer").exists()  # checkpoints dropped once the stage finished
    assert report["final_student"] == str((output / "1-warmup" / "student").resolve())


def test_shipped_config_and_flags_parse():
    """examples/configs/hn_plus.yaml is a valid configuration; flags after it win over its values."""
    from tct_hf.pipeline.config import check_config

    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root / "examples"))
    import train_tct_hn_plus

    config = train_tct_hn_plus.parse_arguments([str(root / "examples/configs/hn_plus.yaml"), "--refresh_rounds", "1"])
    assert (config.mine_depth, config.batch_size, config.refresh_rounds, config.teacher_margin) == (200, 96, 1, None)
    check_config(config)
    assert [name for name, _, _ in plan_stages(config)][-1] == "8-final"
    with pytest.raises(SystemExit, match="refresh_rounds must be an integer >= 0"):
        train_tct_hn_plus.main(["--refresh_rounds", "-1", "--output_dir", "never"])
    assert not Path("never").exists()


def test_documents_run_as_firstp_passages_in_every_stage(files, tmp_path, monkeypatch):
    """A 4-column msmarco-docs.tsv turns documents on by itself: the BM25 examples, the mined examples, both encoded
    indexes and the dev set all see title + body cut to passage_max_length (`firstp_text`), and the dev metrics are
    the document ones."""
    import datasets

    from tct_hf.data.documents import firstp_text
    from tct_hf.evaluation.metrics import DOCUMENT_METRICS

    rng = random.Random(1)
    docs = {f"D{i}": (" ".join(rng.sample(WORDS, 2)), " ".join(rng.sample(WORDS, 20))) for i in range(40)}
    root = tmp_path / "docs"
    root.mkdir()
    (root / "msmarco-docs.tsv").write_text(
        "".join(f"{d}\thttp://x/{d}\t{title}\t{body}\n" for d, (title, body) in docs.items()), encoding="utf-8"
    )
    for split, numbers in (("train", range(12)), ("dev", range(12, 16))):
        (root / f"queries.{split}.tsv").write_text("".join(f"q{i}\t{docs[f'D{i}'][1][:30]}\n" for i in numbers))
        (root / f"qrels.{split}.txt").write_text("".join(f"q{i} 0 D{i} 2\n" for i in numbers))
    firstp = {d: firstp_text(title, body, max_tokens=16) for d, (title, body) in docs.items()}
    assert all(len(text.split()) == 16 for text in firstp.values())  # the cut is exercised

    encoded = []
    encode = stage_module.encode_to_index

    def recording_encode(context, student, corpus, index_dir):
        encoded.append(dict(zip(corpus["id"], corpus["text"])))
        return encode(context, student, corpus, index_dir)

    monkeypatch.setattr(stage_module, "encode_to_index", recording_encode)
    output = tmp_path / "run"
    config = tiny_config(
        files,
        output,
        stages=["warmup", "mine", "final"],
        collection=str(root / "msmarco-docs.tsv"),
        train_queries=str(root / "queries.train.tsv"),
        train_qrels=str(root / "qrels.train.txt"),
        dev_queries=str(root / "queries.dev.tsv"),
        dev_qrels=str(root / "qrels.dev.txt"),
        evaluate_teacher=False,
    )
    report = run_pipeline(config)

    assert [s["name"] for s in report["stages"]] == ["1-warmup", "2-mine", "3-final"]
    assert all(stage["config"]["documents"] is True for stage in stage_records(output).values())
    assert encoded == [firstp, firstp]  # the mining corpus and the dev index
    for folder in ("1-warmup/bm25-examples", "2-mine/negatives"):
        examples = datasets.load_from_disk(str(output / folder))
        assert len(examples) > 0
        for row in examples:
            assert row["positive"] == firstp[row["positive_id"]]
            assert row["negatives"] == [firstp[d] for d in row["negative_ids"]]
    assert list(report["dev_metrics"]["3-final"]["student"]) == list(DOCUMENT_METRICS)
    assert list(report["dev_metrics"]["1-warmup"]["student"]) == list(DOCUMENT_METRICS)
