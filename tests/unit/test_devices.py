"""The --device / device setting of every stage (dekasim.devices)."""

from __future__ import annotations

import pytest
import torch

from dekasim.cli import main
from dekasim.devices import resolve_device
from dekasim.errors import ConfigError


def test_auto_is_the_gpu_when_torch_sees_one_else_the_cpu():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError) as info:
        resolve_device("tpu", "--device")
    assert info.value.field == "--device"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("argv", [["world", "sample", "edge", "--prompt", "a red circle", "--out", "x.png"],
                                  ["align", "--out", "never"]])
def test_cuda_without_a_gpu_is_one_line_naming_the_flag(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dekasim: error: --device = 'cuda'")
    assert not (tmp_path / "never").exists() and not (tmp_path / "x.png").exists()
