"""TCTTrainer under 2 gloo processes (torchrun) equals 1 process on the whole batch: same loss, same update."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("distributed_trainer_script.py")


def run(command: list[str], out: Path, extra: list[str] | None = None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("WORLD_SIZE", None)
    out.mkdir()
    completed = subprocess.run(
        command + [str(out), *(extra or [])], env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return torch.load(out / "result.pt")


@pytest.mark.distributed
def test_two_processes_equal_one_process(tiny_dirs, tmp_path):
    student_dir, teacher_dir = tiny_dirs
    no_dropout = tmp_path / "student"
    from tct_hf import TCTModel

    model = TCTModel.from_pretrained(student_dir, hidden_dropout_prob=0.0)
    model.save_pretrained(no_dropout)
    models = [str(no_dropout), str(teacher_dir)]
    one = run([sys.executable, str(SCRIPT), *models], tmp_path / "one")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two = run([*torchrun, str(SCRIPT), *models], tmp_path / "two")
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert_same_step(one["modes"]["in_batch"], two["modes"]["in_batch"], model)


def assert_same_step(one: dict, two: dict, model, atol: float = 2e-6) -> None:
    assert abs(one["loss"] - two["loss"]) < 1e-5, (one["loss"], two["loss"])
    moved = 0
    for name, weight in one["weights"].items():
        # lr 1.0: weight differences are gradient differences. A few float32 ulps (different GEMM splits of the
        # teacher's and student's matrices); switching gathering off moves the loss by 0.04 and fails here too.
        torch.testing.assert_close(two["weights"][name], weight, atol=atol, rtol=2e-6, msg=name)
        moved += int(not torch.equal(weight, model.state_dict()[name]))
    assert moved > 10, "the step changed almost nothing: the comparison would be empty"


@pytest.mark.distributed
def test_two_processes_with_cached_gradients_equal_one_process_without(tiny_dirs, tmp_path):
    """Every kd_mode: 2 gloo processes x 4 queries in chunks of 3 (passages gathered for the loss, re-encoded in
    chunks, DDP synchronising once) make the update of 1 process x 8 queries encoded at once."""
    student_dir, teacher_dir = tiny_dirs
    no_dropout = tmp_path / "student"
    from tct_hf import TCTModel

    model = TCTModel.from_pretrained(student_dir, hidden_dropout_prob=0.0)
    model.save_pretrained(no_dropout)
    models = [str(no_dropout), str(teacher_dir)]
    modes = ["in_batch", "pairwise", "none"]
    one = run([sys.executable, str(SCRIPT), *models], tmp_path / "one", extra=["0", *modes])
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two = run([*torchrun, str(SCRIPT), *models], tmp_path / "two", extra=["3", *modes])
    assert (one["world_size"], two["world_size"]) == (1, 2)
    for mode in modes:
        # 1e-5 (issue 12's bound): the chunked GEMMs round differently again, most visibly on the token-type
        # embedding, whose gradient sums over every token.
        assert_same_step(one["modes"][mode], two["modes"][mode], model, atol=1e-5)


@pytest.mark.distributed
def test_fsdp_student_on_two_gloo_processes_equals_one_process(tiny_dirs, tmp_path):
    """TCTTrainer.compute_loss with the student sharded by torch FSDP (teacher outside): same loss and gradients."""
    student_dir, teacher_dir = tiny_dirs
    no_dropout = tmp_path / "student"
    from tct_hf import TCTModel

    TCTModel.from_pretrained(student_dir, hidden_dropout_prob=0.0).save_pretrained(no_dropout)
    script = str(Path(__file__).with_name("fsdp_trainer_script.py"))
    models = [str(no_dropout), str(teacher_dir)]
    one = run([sys.executable, script, *models], tmp_path / "one")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two = run([*torchrun, script, *models], tmp_path / "two")
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert abs(one["loss"] - two["loss"]) < 1e-5, (one["loss"], two["loss"])
    assert one["gradients"].keys() == two["gradients"].keys() and len(one["gradients"]) > 10
    for name, gradient in one["gradients"].items():
        torch.testing.assert_close(two["gradients"][name], gradient, atol=1e-5, rtol=1e-5, msg=name)
    assert max(float(g.abs().max()) for g in one["gradients"].values()) > 1e-2  # the comparison is not empty
    # Through accelerate the same two CPU processes would silently get DDP: TCTTrainer refuses fsdp=True there.
    assert "without FSDP" in two["fsdp_refusal"]


def test_fsdp_launch_template_gives_fsdp2_over_bert_layers(monkeypatch):
    """examples/accelerate/fsdp.yaml, read by `accelerate launch`'s own parser, configures FSDP2 wrapping BertLayer
    with full state dicts (so checkpoints are ordinary student directories)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    template = Path(__file__).resolve().parents[2] / "examples" / "accelerate" / "fsdp.yaml"
    args = launch_command_parser().parse_args(["--config_file", str(template), "examples/train_tct.py"])
    args, _, _ = _validate_launch_command(args)
    environment = prepare_multi_gpu_env(args)
    assert environment["ACCELERATE_USE_FSDP"] == "true" and environment["FSDP_VERSION"] == "2"
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.transformer_cls_names_to_wrap == ["BertLayer"]
    assert plugin.state_dict_type.name == "FULL_STATE_DICT"
