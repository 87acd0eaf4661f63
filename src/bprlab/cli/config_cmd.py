"""`bprlab config`: the resolved config of an experiment with each key's stage and help, or one key explained."""

from __future__ import annotations

import textwrap

from bprlab.config.keys import describe, key_info, value_of

STAGE_MEANING = {
    "prepare": "builds the dataset's derived files", "train": "decides the trained weights",
    "encode": "decides the encoded passages", "index": "decides what is built from them",
    "search": "decides how a built index is searched", "eval": "decides what is scored, on which questions",
    "none": "moves no number (paths, logging, devices, threads, batch sizes of inference)",
}


def _show(value) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def print_config(experiment: str | None, overrides: list[str], stage: str | None = None) -> None:
    from bprlab.config import load_config

    cfg = load_config(experiment, overrides)
    rows = [r for r in describe(cfg) if stage is None or r[2] == stage]
    width = max(len(name) for name, *_ in rows)
    values = max(min(len(_show(value)), 28) for _, value, *_ in rows)
    for name, value, key_stage, help_text in rows:
        shown = _show(value)
        shown = shown if len(shown) <= 28 else shown[:25] + "..."
        print(f"{name:<{width}}  {shown:<{values}}  {key_stage:<7}  {help_text}")


def explain(name: str, experiment: str | None = None, overrides: list[str] = ()) -> None:
    from bprlab.config import load_config

    key = key_info(name)
    value = value_of(load_config(experiment, list(overrides)), name) if experiment or overrides else None
    print(f"{key.name}: {key.type}, default {_show(value_of_default(key))}"
          + (f", here {_show(value)}" if experiment or overrides else ""))
    print(f"stage: {key.stage} ({STAGE_MEANING[key.stage]})")
    print(textwrap.fill(key.help, 100))


def value_of_default(key):
    default = key.default
    return getattr(default, "value", default)
