"""DESIGN: core, data, index and eval stay free of Lightning and W&B (imports point one way: pure <- lit <- cli)."""

import subprocess
import sys

PURE = ["bprlab.core.encoder", "bprlab.core.hashing", "bprlab.core.losses", "bprlab.core.scoring",
        "bprlab.data.readers", "bprlab.data.squad", "bprlab.data.passage_store", "bprlab.data.sampling",
        "bprlab.data.collate", "bprlab.index.base", "bprlab.index.binary", "bprlab.index.dense",
        "bprlab.index.build", "bprlab.index.binary_search", "bprlab.index.kernels.hamming",
        "bprlab.index.kernels.lut", "bprlab.index.kernels.buckets", "bprlab.index.kernels.torch_search",
        "bprlab.bench.search", "bprlab.data.answers", "bprlab.eval.metrics", "bprlab.eval.retrieval",
        "bprlab.report.aggregate", "bprlab.stamps",
        "bprlab.config", "bprlab.runs"]


def test_pure_layers_do_not_import_lightning_or_wandb():
    code = "import sys\n" + "".join(f"import {m}\n" for m in PURE) + (
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pytorch_lightning', 'lightning', 'wandb'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
