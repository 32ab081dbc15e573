"""Ranking metrics on trec_eval semantics (ir-measures + pytrec_eval), and an ``evaluate`` metric module."""

from pathlib import Path

from .metrics import DEFAULT_METRICS, DOCUMENT_METRICS, EvaluationResult, evaluate_run

METRIC_MODULE_PATH = str(Path(__file__).resolve().parent / "tct_hf_metric")
"""Folder to pass to ``evaluate.load`` (works offline): ``evaluate.load(tct_hf.evaluation.METRIC_MODULE_PATH)``."""

__all__ = ["DEFAULT_METRICS", "DOCUMENT_METRICS", "METRIC_MODULE_PATH", "EvaluationResult", "evaluate_run"]
