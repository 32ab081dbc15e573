"""Model cards for trained students and teachers, rendered from the templates in `model_cards/` with
`huggingface_hub.ModelCard` (YAML metadata + markdown)."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

KD_MODE_DESCRIPTIONS = {
    "in_batch": "in-batch knowledge distillation (KL over every query-passage pair of the batch)",
    "pairwise": "pairwise knowledge distillation (KL over each query's own positive and negatives)",
    "none": "in-batch negatives without a teacher (cross-entropy baseline)",
}


def template_path(name: str) -> Path:
    """Path of a packaged template: `tct_student` or `colbert_teacher`."""
    path = resources.files("tct_hf.hub").joinpath("model_cards", f"{name}.md")
    if not path.is_file():
        raise FileNotFoundError(f"no model card template {name!r} at {path}; expected tct_student or colbert_teacher")
    return Path(str(path))


def markdown_table(rows: Mapping[str, object], header: tuple[str, str] = ("name", "value")) -> str:
    """A two-column markdown table; floats get 4 decimals."""
    if not rows:
        return "_not measured_"
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    for key, value in rows.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"| {key} | {shown} |")
    return "\n".join(lines)


def render_student_card(
    *,
    repo_id: str,
    base_model: str,
    teacher: str | None,
    kd_mode: str,
    metrics: Mapping[str, float] | None = None,
    training_config: Mapping[str, object] | None = None,
    dataset_description: str = "MS MARCO passage-format training triples",
    query_max_length: int = 36,
    passage_max_length: int = 512,
    datasets: list[str] | None = None,
) -> ModelCard:
    """Render the TCT student's card: usage (AutoModel, SentenceTransformer), metrics, training config, citation."""
    card_data = ModelCardData(
        library_name="sentence-transformers",
        pipeline_tag="sentence-similarity",
        license="apache-2.0",
        base_model=base_model if "/" in base_model else None,
        datasets=datasets,
        tags=["tct_hf", "tct-colbert", "dense-retrieval", "knowledge-distillation", "sentence-transformers"],
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path("tct_student")),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        base_model=base_model,
        teacher=teacher or "none",
        kd_mode_description=KD_MODE_DESCRIPTIONS.get(kd_mode, kd_mode),
        dataset_description=dataset_description,
        metrics_table=markdown_table(metrics or {}, ("metric", "value")),
        training_table=markdown_table(training_config or {}, ("argument", "value")),
        query_max_length=query_max_length,
        passage_max_length=passage_max_length,
    )


def render_teacher_card(
    *,
    repo_id: str,
    base_model: str,
    dim: int,
    convention: str,
    metrics: Mapping[str, float] | None = None,
    training_config: Mapping[str, object] | None = None,
    dataset_description: str = "MS MARCO passage-format training triples",
) -> ModelCard:
    """Render the ColBERT teacher's card."""
    card_data = ModelCardData(
        library_name="transformers",
        license="apache-2.0",
        base_model=base_model if "/" in base_model else None,
        tags=["tct_hf", "colbert", "late-interaction"],
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path("colbert_teacher")),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        base_model=base_model,
        dim=dim,
        convention=convention,
        dataset_description=dataset_description,
        metrics_table=markdown_table(metrics or {}, ("metric", "value")),
        training_table=markdown_table(training_config or {}, ("argument", "value")),
    )
