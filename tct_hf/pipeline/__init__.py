"""The paper's HN+ pipeline as resumable stages (Lin, Yang & Lin 2021, sections 3-4: TCT HN+, "2x TCT HN+").

    from tct_hf.pipeline import PipelineConfig, run_pipeline

    report = run_pipeline(PipelineConfig(output_dir="hn-plus", teacher_margin=0.0, refresh_rounds=1))
    report["final_student"]     # a student folder that SentenceTransformer(...) loads

Stages (`config.STAGE_KINDS`), each in its own folder under ``output_dir`` (``1-warmup``, ``2-mine``, ``3-teacher``,
``4-student``, ``5-mine-r1`` ..., ``N-final``) with a ``stage.json`` once it has finished (configuration, inputs,
outputs, dev metrics, seconds). Rerunning skips every stage whose ``stage.json`` matches its inputs and configuration
(`records`); an interrupted stage is redone, or resumed from its Trainer checkpoint (``save_steps``). The work is
the library's own (`stages`); `runner` only orders, checks and records it.
"""

from .config import STAGE_KINDS, PipelineConfig, PipelineConfigError, plan_stages
from .runner import end_processes, run_pipeline

__all__ = ["STAGE_KINDS", "PipelineConfig", "PipelineConfigError", "end_processes", "plan_stages", "run_pipeline"]
