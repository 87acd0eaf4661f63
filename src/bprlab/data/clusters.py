"""Which test questions are not independent of each other: the cluster each belongs to, for tests that resample
clusters instead of questions (docs/method.md#uncertainty).

- A DPR qa file `X.qa.csv` may come with `X.clusters.txt` beside it, one label per question in file order: the
  dataset says how its questions were drawn. squad writes one (`<article>/<paragraph>`: about five questions were
  written against each paragraph, so they share its wording and its passage).
- Queries with relevance judgements cluster where they share a judged document (connected components: BEIR
  queries written against one document move together); a query sharing none is its own cluster.
- Otherwise every question is its own cluster (None).
"""

from __future__ import annotations

from pathlib import Path

from bprlab.data.records import QARecord
from bprlab.errors import DataFormatError

PARAGRAPH = "paragraph"
SHARED_DOCUMENT = "queries sharing a judged document"


def clusters_file(qa_file: str | Path) -> Path:
    path = Path(qa_file)
    stem = path.name[: -len(".qa.csv")] if path.name.endswith(".qa.csv") else path.stem
    return path.with_name(f"{stem}.clusters.txt")


def write_clusters(qa_file: str | Path, labels: list[str], unit: str) -> Path:
    """`# unit: <name>` then one label per line (labels hold no line breaks)."""
    path = clusters_file(qa_file)
    path.write_text(f"# unit: {unit}\n" + "".join(f"{label}\n" for label in labels), encoding="utf-8")
    return path


def question_clusters(questions: list[QARecord], qa_file: str | Path | None) -> tuple[list[str], str] | None:
    """(one label per question, the unit's name), or None: every question its own cluster."""
    if qa_file is not None and clusters_file(qa_file).is_file():
        return _read_clusters(clusters_file(qa_file), len(questions))
    if any(q.relevant for q in questions):
        return _shared_documents(questions), SHARED_DOCUMENT
    return None


def _read_clusters(path: Path, count: int) -> tuple[list[str], str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    unit = lines[0][len("# unit:"):].strip() if lines and lines[0].startswith("# unit:") else "cluster"
    labels = lines[1:] if lines and lines[0].startswith("#") else lines
    if len(labels) < count:
        raise DataFormatError(path, None, f"{len(labels)} cluster labels for {count} questions: one label per "
                                          "question of the qa file beside it")
    return labels[:count], unit


def _shared_documents(questions: list[QARecord]) -> list[str]:
    parent = list(range(len(questions)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_with: dict[str, int] = {}
    for i, q in enumerate(questions):
        for doc, grade in (q.relevant or {}).items():
            if grade <= 0:
                continue
            if doc in first_with:
                parent[root(i)] = root(first_with[doc])
            else:
                first_with[doc] = i
    return [f"c{root(i)}" for i in range(len(questions))]
