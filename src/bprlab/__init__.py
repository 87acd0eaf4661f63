"""bprlab: DPR and Binary Passage Retriever experiments, from a laptop to a GPU cluster."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`from bprlab import Retriever` without importing torch for every `import bprlab`."""
    if name in ("Retriever", "Hit"):
        from bprlab import retriever

        return getattr(retriever, name)
    raise AttributeError(f"module 'bprlab' has no attribute {name!r}")
