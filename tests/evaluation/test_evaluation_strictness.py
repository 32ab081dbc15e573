"""`evaluate_run` and `tct-hf evaluate` are as strict as trec_eval: inputs that cannot be compared are errors, never
all-zero metrics with exit status 0; the query coverage is part of the JSON."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from tct_hf.cli import main
from tct_hf.evaluation.metrics import evaluate_run

RUN = {"1": {"d1": 2.0, "d2": 1.0}, "2": {"d3": 1.0}, "9": {"d1": 1.0}}
QRELS = {"1": {"d2": 1}, "2": {"d3": 1}, "3": {"d4": 1}}


@pytest.mark.parametrize("complete", [True, False])
@pytest.mark.parametrize(
    "run, qrels, message",
    [
        ({}, QRELS, "the run is empty"),
        ({"1": {}}, QRELS, "the run is empty"),
        (RUN, {}, "the qrels is empty"),
        ({"001": {"d2": 1.0}}, {"1": {"d2": 1}}, "no query is both in the run"),
    ],
)
def test_inputs_that_cannot_be_compared_are_errors(run, qrels, message, complete):
    with pytest.raises(ValueError, match=message):
        evaluate_run(run, qrels, complete=complete)


def cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(arg) for arg in args])
    return status, out.getvalue(), err.getvalue()


def test_cli_refuses_empty_run_and_disjoint_ids(tmp_path):
    (tmp_path / "empty.trec").write_text("")
    (tmp_path / "run.trec").write_text("001 Q0 d1 1 1.0 t\n")
    (tmp_path / "qrels.txt").write_text("1 0 d1 1\n")
    (tmp_path / "empty_qrels.txt").write_text("\n")
    for run, qrels, message in [
        ("empty.trec", "qrels.txt", "the run is empty"),
        ("run.trec", "empty_qrels.txt", "the qrels is empty"),
        ("run.trec", "qrels.txt", "no query is both in the run"),
    ]:
        status, out, err = cli("evaluate", "--run", tmp_path / run, "--qrels", tmp_path / qrels)
        assert status == 2 and out == "" and message in err, (run, qrels, err)


def test_cli_json_reports_the_coverage(tmp_path):
    (tmp_path / "run.trec").write_text("".join(f"{q} Q0 {d} 1 {s} t\n" for q, r in RUN.items() for d, s in r.items()))
    (tmp_path / "qrels.txt").write_text("".join(f"{q} 0 {d} {r}\n" for q, j in QRELS.items() for d, r in j.items()))
    status, out, err = cli("evaluate", "--run", tmp_path / "run.trec", "--qrels", tmp_path / "qrels.txt")
    assert status == 0, err
    summary = json.loads(out)
    # q1: relevant at rank 2 (0.5), q2: rank 1 (1.0), q3 judged but absent: 0 (trec_eval -c); q9 unjudged: left out.
    assert summary["RR@10"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    coverage = summary["queries"]
    assert coverage["evaluated"] == 3
    assert coverage["run_queries_without_judgments_ids"] == ["9"]
    assert coverage["qrels_queries_without_results_ids"] == ["3"]
    assert coverage["run_queries_without_judgments"] == 1 and coverage["qrels_queries_without_results"] == 1
