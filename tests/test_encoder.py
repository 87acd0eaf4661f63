"""Loading an encoder (bprlab.core.encoder): a model folder without a usable tokenizer is one clear error, never a
model that reads every word as [UNK]."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bprlab.core.encoder import load_tokenizer
from bprlab.errors import ConfigError

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_a_folder_of_weights_without_tokenizer_files_is_refused(tiny_bert, tmp_path):
    weights_only = tmp_path / "weights-only"
    shutil.copytree(tiny_bert, weights_only)
    for path in weights_only.iterdir():
        if path.name.startswith(("vocab", "tokenizer", "special_tokens")):
            path.unlink()
    with pytest.raises(ConfigError, match=f"model.name={weights_only}: .* has no tokenizer files"):
        load_tokenizer(str(weights_only))
    assert len(load_tokenizer(tiny_bert)) > 30000  # the folder it was copied from is fine


def test_a_tokenizer_that_knows_no_words_is_refused(tiny_bert, tmp_path):
    stub = tmp_path / "stub-vocab"
    shutil.copytree(tiny_bert, stub)
    for path in stub.iterdir():
        if path.name.startswith(("vocab", "tokenizer")):
            path.unlink()
    Path(stub / "vocab.txt").write_text("\n".join(SPECIALS) + "\n")
    with pytest.raises(ConfigError, match="maps every word of an English sentence to '\\[UNK\\]' \\(a vocabulary of 5"):
        load_tokenizer(str(stub))


def test_one_device_rule_for_the_encoder_and_the_search_kernels():
    import torch

    from bprlab.config.enums import SearchDevice
    from bprlab.core.devices import resolve_device
    from bprlab.errors import ConfigError

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == resolve_device("auto").type == resolve_device(SearchDevice.auto).type == expected
    assert resolve_device(SearchDevice.cpu) == resolve_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="index.device=cuda but no CUDA device is visible"):
            resolve_device(SearchDevice.cuda, "index.device")
