"""Give unit records made before outcomes carried cluster labels their questions' clusters, once, from the data
they were evaluated on (checked by the question digest: a record whose questions differ is left as it is).

    python -m bprlab.report.add_clusters experiments/ablations data/squad data/squad-beir
"""

from __future__ import annotations

import sys
from pathlib import Path

from bprlab.artifacts import read_json, write_json
from bprlab.data.beir import read_beir_queries
from bprlab.data.clusters import question_clusters
from bprlab.data.readers import read_qa
from bprlab.eval.outcomes import CLUSTER, CLUSTER_UNIT, question_digest


def known_question_sets(squad: Path, beir: Path) -> dict[str, tuple[list[str], str]]:
    """{question digest: (labels, unit)} for the question sets these folders hold."""
    out = {}
    for questions, qa_file in ((read_qa(squad / "squad-test.qa.csv"), squad / "squad-test.qa.csv"),
                               (read_beir_queries(beir, "test"), None)):
        found = question_clusters(questions, qa_file)
        if found is not None:
            out[question_digest(questions)] = found
    return out


def add_clusters(folder: Path, known: dict[str, tuple[list[str], str]]) -> tuple[int, int]:
    added = skipped = 0
    for path in sorted(folder.glob("*/units/*/*.json")):
        record = read_json(path)
        outcomes, digest = record.get("outcomes") or {}, (record.get("metrics") or {}).get("questions_sha256")
        if CLUSTER in outcomes:
            continue
        labels = known.get(digest)
        count = len(next(iter(outcomes.values()), []))
        if labels is None or len(labels[0]) != count:
            skipped += 1
            continue
        outcomes[CLUSTER], outcomes[CLUSTER_UNIT] = labels[0], labels[1]
        write_json(path, record)
        added += 1
    return added, skipped


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m bprlab.report.add_clusters <tables folder> <squad data> <beir fixture>", file=sys.stderr)
        return 2
    added, skipped = add_clusters(Path(argv[0]), known_question_sets(Path(argv[1]), Path(argv[2])))
    print(f"cluster labels added to {added} unit records; {skipped} left as they were (other questions)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
