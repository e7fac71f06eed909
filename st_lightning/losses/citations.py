"""BibTeX entries shared by several losses (and the model card)."""

SBERT = """@inproceedings{reimers-2019-sentence-bert,
    title = "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks",
    author = "Reimers, Nils and Gurevych, Iryna",
    booktitle = "Proceedings of EMNLP-IJCNLP 2019", year = "2019",
    url = "https://arxiv.org/abs/1908.10084"
}"""
