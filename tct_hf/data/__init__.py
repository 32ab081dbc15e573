"""MS MARCO-format data for TCT-ColBERT training: readers returning `datasets` objects, the training format
`{"query", "positive", "negatives"}`, the in-batch KD collator and the embedded demo sample."""

from .collator import TCTCollator, passage_id
from .documents import FirstPLookup, firstp_dataset, firstp_text, is_msmarco_documents, iter_documents, load_documents
from .errors import DataFormatError
from .lookup import TextLookup
from .msmarco import load_collection, load_qrels, load_queries, qrels_to_dict, read_queries
from .run_files import Qrels, Run, RunFormatError, read_qrels, read_run, write_run
from .sample_files import sample_paths
from .training_examples import build_training_examples
from .training_format import load_hub_dataset, load_mined_negatives, to_training_format
from .triples import load_id_triples, load_text_triples

__all__ = [
    "Qrels",
    "Run",
    "RunFormatError",
    "read_qrels",
    "read_queries",
    "read_run",
    "write_run",
    "DataFormatError",
    "FirstPLookup",
    "firstp_dataset",
    "firstp_text",
    "is_msmarco_documents",
    "iter_documents",
    "load_documents",
    "TCTCollator",
    "TextLookup",
    "build_training_examples",
    "load_collection",
    "load_hub_dataset",
    "load_id_triples",
    "load_mined_negatives",
    "load_qrels",
    "load_queries",
    "load_text_triples",
    "passage_id",
    "qrels_to_dict",
    "sample_paths",
    "to_training_format",
]
