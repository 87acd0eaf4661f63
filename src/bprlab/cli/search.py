"""`bprlab search <experiment.yaml> ["question" ...] [--k 5] [--answers A ...] [key=value ...]` and
`bprlab export <experiment.yaml> --to DIR [key=value ...]`.

With questions on the command line, search prints each question's ranked passages (score, title, the first
words, answers highlighted); with none, it reads questions from stdin, one per line, and writes one JSON object
per line (question, hits with rank, row, id, title, score, text).
"""

from __future__ import annotations

import json
import re
import sys

OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")  # key=value: a config override, not a question
WORDS = 40


def split_overrides(items: list[str]) -> tuple[list[str], list[str]]:
    overrides = [i for i in items if OVERRIDE.match(i)]
    return [i for i in items if not OVERRIDE.match(i)], overrides


def highlight(text: str, answers: list[str], tty: bool) -> str:
    for answer in sorted({a for a in answers if a.strip()}, key=len, reverse=True):
        mark = (lambda m: f"\033[1;33m{m.group(0)}\033[0m") if tty else (lambda m: f"**{m.group(0)}**")
        text = re.sub(re.escape(answer), mark, text, flags=re.IGNORECASE)
    return text


def search_command(experiment: str, items: list[str], k: int, answers: list[str], out=None, stdin=None) -> int:
    from bprlab.retriever import Retriever

    out, stdin = out or sys.stdout, stdin or sys.stdin
    questions, overrides = split_overrides(items)
    retriever = Retriever.from_config(experiment, overrides)
    if not questions:  # a pipe: one question per line in, one JSON object per line out
        for line in _lines(stdin):
            question = line.strip()
            if question:
                hits = retriever.search([question], k)[0]
                out.write(json.dumps({"question": question, "hits": [vars(h) for h in hits]}) + "\n")
        return 0
    tty = out.isatty()
    for question, hits in zip(questions, retriever.search(questions, k)):
        out.write(f"\n{question}\n")
        if not hits:
            out.write("  (no passage found)\n")
        for hit in hits:
            words = (hit.text or "").split()
            snippet = " ".join(words[:WORDS]) + (" ..." if len(words) > WORDS else "")
            out.write(f"  {hit.rank:>2}. {hit.score:8.3f}  {hit.title or hit.id}  [{hit.id}]\n"
                      f"      {highlight(snippet, answers, tty)}\n")
    return 0


def _lines(stdin):
    """stdin's lines; bytes that are not UTF-8 stop with the line they are on."""
    from bprlab.errors import ConfigError

    raw = getattr(stdin, "buffer", None)
    source = raw if raw is not None else stdin
    for number, line in enumerate(source, start=1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ConfigError(f"stdin: line {number} is not UTF-8 text (byte {line[exc.start:exc.start + 1]!r}); "
                                  "give one question per line in UTF-8") from None
        yield line


def export_command(experiment: str, overrides: list[str], to: str, force: bool = False) -> int:
    from bprlab.config import load_config
    from bprlab.export import export_run

    print(f"written: {export_run(load_config(experiment, overrides), to, force=force)}")
    return 0
