"""bprlab: DPR and Binary Passage Retriever experiments, from a laptop to a GPU cluster."""

__version__ = "0.1.0"
