"""BibTeX entries returned by the loss modules' ``citation`` property."""

from __future__ import annotations

__all__ = ["COLBERT_CITATION", "TCT_COLBERT_CITATION"]

TCT_COLBERT_CITATION = """
@inproceedings{lin-etal-2021-batch,
    title = "In-Batch Negatives for Knowledge Distillation with Tightly-Coupled Teachers for Dense Retrieval",
    author = "Lin, Sheng-Chieh and Yang, Jheng-Hong and Lin, Jimmy",
    booktitle = "Proceedings of the 6th Workshop on Representation Learning for NLP (RepL4NLP-2021)",
    year = "2021",
    pages = "163--173",
    url = "https://aclanthology.org/2021.repl4nlp-1.17/",
}
"""

COLBERT_CITATION = """
@inproceedings{khattab2020colbert,
    title = "ColBERT: Efficient and Effective Passage Search via Contextualized Late Interaction over BERT",
    author = "Khattab, Omar and Zaharia, Matei",
    booktitle = "Proceedings of the 43rd International ACM SIGIR Conference on Research and Development in
                 Information Retrieval",
    year = "2020",
    pages = "39--48",
    url = "https://doi.org/10.1145/3397271.3401075",
}
"""
