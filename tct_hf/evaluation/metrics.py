"""Retrieval metrics on trec_eval semantics, through ir-measures with its pytrec_eval backend.

``evaluate_run(run, qrels, metrics=("RR@10", "R@1000", "nDCG@10"))`` accepts any measure name ir-measures parses
and pytrec_eval computes (``AP``, ``P@5``, ``nDCG@10``, ``R@100``, ``RR``, ``Judged@10``...). Conventions:

- Ranking: documents sorted by score descending, ties broken by docid descending (trec_eval's rule; the rank
  column of a run file is ignored).
- ``RR@k`` is the reciprocal rank of the first relevant document within the top ``k`` (0 if none), as MS MARCO's
  official ``msmarco_eval.py`` and ``trec_eval -M k -m recip_rank`` (``RR@10`` for passages, ``RR@100`` for
  documents: ``DOCUMENT_METRICS``). trec_eval's ``recip_rank`` itself has no cutoff,
  so ``RR@k`` is computed as pytrec_eval's ``recip_rank`` on the run cut to its top ``k`` (trec_eval order).
- ``nDCG@k``: trec_eval's graded nDCG with linear gain ``rel`` and discount ``log2(rank + 1)``.
- ``R@k``: relevant documents retrieved in the top ``k`` / all relevant documents of the query.
- Relevance: a document is relevant when ``rel >= 1`` (``RR(rel=2)@10`` etc. change the threshold).

Strictness (as trec_eval, which refuses an empty results file): an empty run, empty qrels, or a run and qrels that
share no query (e.g. ids ``1`` vs ``001``) raise `ValueError` in both modes — all-zero metrics are never reported
for inputs that cannot be compared.

Query sets (counted in the result and in ``as_dict()``'s ``"queries"``, logged as a warning when not zero):

- run queries without any judgment cannot be scored and are always left out (trec_eval does the same);
- qrels queries with no result in the run count as 0 for every metric when ``complete=True`` (the default, as
  ``trec_eval -c`` and MS MARCO's official script, whose MRR divides by the number of judged queries); with
  ``complete=False`` they are left out (trec_eval's default: only judged queries that have results count).

Example:
    >>> run = {"q1": {"d1": 2.0, "d2": 1.0}, "q2": {"d3": 0.5}}
    >>> qrels = {"q1": {"d2": 1}, "q2": {"d9": 1}}
    >>> evaluate_run(run, qrels, metrics=("RR@10",)).metrics
    {'RR@10': 0.25}
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import ir_measures
import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_METRICS = ("RR@10", "R@1000", "nDCG@10")
# MS MARCO document ranking reports MRR@100 (dev) and nDCG@10 (TREC DL 2019 documents); RR@100 is cut like RR@10.
DOCUMENT_METRICS = ("RR@100", "RR@10", "nDCG@10", "R@100")

__all__ = ["DEFAULT_METRICS", "DOCUMENT_METRICS", "EvaluationResult", "evaluate_run"]


@dataclass
class EvaluationResult:
    """Mean metric values plus the query bookkeeping behind them.

    Attributes:
        metrics: metric name (as requested) → mean over the evaluated queries.
        per_query: qid → metric name → value (``None`` unless ``per_query=True``).
        num_queries: queries in the average (judged run queries, plus missing qrels queries when complete).
        run_queries_without_judgments: run qids absent from the qrels (never scored).
        qrels_queries_without_results: qrels qids absent from the run (0 when ``complete``, else left out).
        complete: whether qrels queries without results counted as 0.
    """

    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]] | None = None
    num_queries: int = 0
    run_queries_without_judgments: list[str] = field(default_factory=list)
    qrels_queries_without_results: list[str] = field(default_factory=list)
    complete: bool = True

    def as_dict(self) -> dict:
        """JSON-ready summary: the metrics, then the coverage under ``"queries"`` (counts, and the ids of run queries
        without judgments and of judged queries without results), then ``per_query`` when present."""
        summary: dict = dict(self.metrics)
        summary["queries"] = {
            "evaluated": self.num_queries,
            "run_queries_without_judgments": len(self.run_queries_without_judgments),
            "qrels_queries_without_results": len(self.qrels_queries_without_results),
            "missing_counted_as_zero": self.complete,
            "run_queries_without_judgments_ids": list(self.run_queries_without_judgments),
            "qrels_queries_without_results_ids": list(self.qrels_queries_without_results),
        }
        if self.per_query is not None:
            summary["per_query"] = self.per_query
        return summary


def _parse(metrics: Iterable[str]) -> list[tuple[str, ir_measures.Measure]]:
    parsed = []
    for name in metrics:
        try:
            measure = ir_measures.parse_measure(name)
        except (ValueError, NameError, SyntaxError) as error:
            raise ValueError(
                f"unknown metric {name!r}. Fix: use an ir-measures name such as RR@10, R@1000, nDCG@10, AP, P@5."
            ) from error
        if measure.NAME != "RR" and not ir_measures.pytrec_eval.supports(measure):
            raise ValueError(f"metric {name!r} is not computed by pytrec_eval. Fix: choose a trec_eval measure.")
        parsed.append((name, measure))
    return parsed


def _trec_eval_top_k(run: Mapping[str, Mapping[str, float]], k: int) -> dict[str, dict[str, float]]:
    """Each query cut to its top ``k`` in trec_eval order: score descending, ties by docid descending."""
    cut: dict[str, dict[str, float]] = {}
    for qid, scores in run.items():
        if len(scores) <= k:
            cut[qid] = dict(scores)
            continue
        docids = np.array(list(scores.keys()), dtype=str)
        values = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
        # lexsort: last key is primary. Descending docid = reverse of ascending order among equal scores.
        order = np.lexsort((docids, values))[::-1][:k]
        cut[qid] = {docids[i]: float(values[i]) for i in order}
    return cut


def _validate(run: Mapping, qrels: Mapping) -> None:
    for name, table, kind in (("run", run, float), ("qrels", qrels, int)):
        if not isinstance(table, Mapping):
            raise TypeError(f"{name} must be a dict {{qid: {{docid: {kind.__name__}}}}}, got {type(table).__name__}")
        for qid, inner in table.items():
            if not isinstance(inner, Mapping):
                raise TypeError(f"{name}[{qid!r}] must be a dict {{docid: {kind.__name__}}}")


def evaluate_run(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    metrics: Sequence[str] = DEFAULT_METRICS,
    per_query: bool = False,
    complete: bool = True,
) -> EvaluationResult:
    """Evaluate ``run`` against ``qrels`` on trec_eval semantics (see the module docstring for every convention).

    Args:
        run: ``{qid: {docid: score}}``.
        qrels: ``{qid: {docid: relevance}}``.
        metrics: ir-measures names, e.g. ``("RR@10", "R@1000", "nDCG@10", "AP")``.
        per_query: also return each query's values.
        complete: count qrels queries missing from the run as 0 (``trec_eval -c``; default) or leave them out.

    Returns:
        An :class:`EvaluationResult`; ``result.metrics`` maps each requested name to its mean.
    """
    _validate(run, qrels)
    parsed = _parse(metrics)
    if not parsed:
        raise ValueError("no metric requested. Fix: pass e.g. metrics=('RR@10', 'nDCG@10').")
    for name, table, fix in (
        ("run", run, "retrieve for at least one query"),
        ("qrels", qrels, "give at least one judgment"),
    ):
        if not any(table.values()):
            raise ValueError(f"the {name} is empty (no query with any document). Fix: {fix}.")
    run_without_judgments = [qid for qid in run if qid not in qrels]
    qrels_without_results = [qid for qid in qrels if qid not in run or not run[qid]]
    judged_run = {qid: {d: float(s) for d, s in run[qid].items()} for qid in run if qid in qrels and run[qid]}
    evaluated = list(judged_run)
    counted = evaluated + (qrels_without_results if complete else [])
    if run_without_judgments:
        logger.warning("%d run queries have no judgments and are not evaluated", len(run_without_judgments))
    if qrels_without_results:
        logger.warning(
            "%d judged queries have no results in the run (%s)",
            len(qrels_without_results),
            "counted as 0" if complete else "left out of the average",
        )
    if not evaluated:  # in both modes: complete=True would otherwise average zeros of the judged queries
        raise ValueError(
            f"no query is both in the run and in the qrels (run: {len(run)} queries, qrels: {len(qrels)}). "
            "Fix: check that the query ids match (e.g. '1' vs '001')."
        )
    judged_qrels = {qid: {d: int(r) for d, r in qrels[qid].items()} for qid in evaluated}

    values: dict[str, dict[str, float]] = {qid: {} for qid in counted}
    groups: dict[int | None, list[tuple[str, ir_measures.Measure]]] = {}
    for name, measure in parsed:
        if measure.NAME == "RR" and measure.params.get("cutoff") is not None:
            uncut = ir_measures.RR(**{k: v for k, v in measure.params.items() if k != "cutoff"})
            groups.setdefault(measure.params["cutoff"], []).append((name, uncut))
        else:
            groups.setdefault(None, []).append((name, measure))
    for cutoff, named in groups.items():
        group_run = judged_run if cutoff is None else _trec_eval_top_k(judged_run, cutoff)
        names_by_measure: dict[ir_measures.Measure, list[str]] = {}
        for name, measure in named:
            names_by_measure.setdefault(measure, []).append(name)
        if evaluated:
            for metric in ir_measures.pytrec_eval.iter_calc(list(names_by_measure), judged_qrels, group_run):
                if metric.query_id in judged_run:
                    for name in names_by_measure[metric.measure]:
                        values[metric.query_id][name] = float(metric.value)
    for qid in counted:
        for name, _ in parsed:
            values[qid].setdefault(name, 0.0)
    means = {name: float(np.mean([values[qid][name] for qid in counted])) for name, _ in parsed}
    return EvaluationResult(
        metrics=means,
        per_query=values if per_query else None,
        num_queries=len(counted),
        run_queries_without_judgments=run_without_judgments,
        qrels_queries_without_results=qrels_without_results,
        complete=complete,
    )
