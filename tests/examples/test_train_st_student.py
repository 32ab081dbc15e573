"""examples/train_st_student.py end to end on the embedded sample with tiny random BERTs: metrics before and after,
a sentence-transformers model whose generated card names the loss and cites the paper, loadable without tct_hf."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_st_student  # noqa: E402
from test_train_scripts import backbone, small_dev  # noqa: E402,F401 (fixtures)

TINY = ["--per_device_train_batch_size", "4", "--bf16", "false", "--use_cpu", "true", "--logging_steps", "1"]


def test_train_st_student_default_path(backbone, small_dev, tmp_path):  # noqa: F811 (fixtures)
    out = tmp_path / "student"
    results = train_st_student.main(
        [
            "--student_model", str(backbone), "--output_dir", str(out), "--max_steps", "2",
            "--teacher_train_steps", "2", "--teacher_dim", "16", "--teacher_batch_size", "4",
            "--teacher_autocast_dtype", "float32", *small_dev, *TINY,
        ]
    )  # fmt: skip
    assert set(results) == {"student_before", "student_after"}
    for metrics in results.values():
        assert set(metrics) == {"nDCG@10", "RR@10", "R@100"}
        assert all(0.0 <= value <= 1.0 for value in metrics.values())
    assert json.loads((out / "retrieval_metrics.json").read_text())["student_after"] == results["student_after"]
    card = (out / "README.md").read_text()
    assert "InBatchKDLoss" in card and "lin-etal-2021-batch" in card
    assert not list(out.rglob("*colbert*")) and not (out / "teacher").exists()
    # Loads with sentence-transformers alone: tct_hf made unimportable in a fresh interpreter.
    code = (
        "import sys; sys.modules['tct_hf'] = None\n"
        "from sentence_transformers import SentenceTransformer\n"
        f"model = SentenceTransformer({str(out)!r}, device='cpu')\n"
        "print(model.encode(['heat of water']).shape, model.similarity_fn_name)\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert "(1, 32) cosine" in loaded.stdout


def test_train_st_student_refuses_a_teacher_that_is_not_colbert(backbone, small_dev, tmp_path):  # noqa: F811
    with pytest.raises(OSError):
        train_st_student.main(
            ["--student_model", str(backbone), "--teacher_model", str(tmp_path / "missing"),
             "--output_dir", str(tmp_path / "o"), "--max_steps", "1", *small_dev, *TINY]
        )  # fmt: skip
