"""An ``evaluate`` metric wrapping :func:`tct_hf.evaluation.metrics.evaluate_run` (trec_eval semantics).

One example = one query: the prediction is the query's retrieved documents with their scores, the reference is
its judged documents with their relevance. Load it offline from the installed package:

    >>> import os
    >>> import evaluate
    >>> import tct_hf.evaluation
    >>> path = os.path.join(os.path.dirname(tct_hf.evaluation.__file__), "tct_hf_metric")
    >>> metric = evaluate.load(path)  # doctest: +SKIP
    >>> metric.compute(
    ...     predictions=[{"doc_ids": ["d1", "d2"], "scores": [2.0, 1.0]}],
    ...     references=[{"doc_ids": ["d2"], "relevance": [1]}],
    ...     metrics=["RR@10", "nDCG@10"],
    ... )  # doctest: +SKIP
    {'RR@10': 0.5, 'nDCG@10': 0.6309297535714575}
"""

import datasets
import evaluate

from tct_hf.evaluation.metrics import DEFAULT_METRICS, evaluate_run

_CITATION = """\
@inproceedings{lin-etal-2021-batch,
    title = "In-Batch Negatives for Knowledge Distillation with Tightly-Coupled Teachers for Dense Retrieval",
    author = "Lin, Sheng-Chieh and Yang, Jheng-Hong and Lin, Jimmy",
    booktitle = "Proceedings of the 6th Workshop on Representation Learning for NLP (RepL4NLP-2021)",
    year = "2021",
    pages = "163--173",
}
"""

_DESCRIPTION = """\
Ranking metrics with trec_eval semantics through ir-measures and pytrec_eval: RR@k with MS MARCO's cutoff, graded
nDCG@k (linear gain), R@k, AP, P@k and any other measure pytrec_eval computes. Documents are ranked by score
descending, ties by docid descending (trec_eval). Queries are the examples; queries without any judged document
still count (as 0) when `complete=True` (default, like `trec_eval -c`).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: one dict per query, {"doc_ids": list of str, "scores": list of float}.
    references: one dict per query, {"doc_ids": list of str, "relevance": list of int} (the query's judgments).
    metrics: ir-measures names, default ("RR@10", "R@1000", "nDCG@10").
    complete: count queries whose prediction is empty as 0 (default True) or leave them out.
Returns:
    dict: metric name -> mean over queries.
Example:
    >>> metric.compute(predictions=[{"doc_ids": ["a"], "scores": [1.0]}],
    ...                references=[{"doc_ids": ["a"], "relevance": [1]}], metrics=["RR@10"])
    {'RR@10': 1.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TctHfMetric(evaluate.Metric):
    """Per-query ranking metrics for dense retrieval, computed by tct_hf's ``evaluate_run``."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": {
                        "doc_ids": datasets.Sequence(datasets.Value("string")),
                        "scores": datasets.Sequence(datasets.Value("float64")),
                    },
                    "references": {
                        "doc_ids": datasets.Sequence(datasets.Value("string")),
                        "relevance": datasets.Sequence(datasets.Value("int64")),
                    },
                }
            ),
            reference_urls=["https://github.com/terrierteam/ir_measures", "https://github.com/cvangysel/pytrec_eval"],
        )

    def _compute(self, predictions, references, metrics=DEFAULT_METRICS, complete=True):
        run, qrels = {}, {}
        for position, (prediction, reference) in enumerate(zip(predictions, references)):
            if len(prediction["doc_ids"]) != len(prediction["scores"]):
                raise ValueError(
                    f"prediction {position}: {len(prediction['doc_ids'])} doc_ids for "
                    f"{len(prediction['scores'])} scores. Fix: one score per document."
                )
            if len(reference["doc_ids"]) != len(reference["relevance"]):
                raise ValueError(
                    f"reference {position}: {len(reference['doc_ids'])} doc_ids for "
                    f"{len(reference['relevance'])} relevance values. Fix: one value per document."
                )
            qid = str(position)
            run[qid] = dict(zip(prediction["doc_ids"], (float(score) for score in prediction["scores"])))
            qrels[qid] = dict(zip(reference["doc_ids"], (int(rel) for rel in reference["relevance"])))
        return evaluate_run(run, qrels, metrics=list(metrics), complete=complete).metrics
