"""Entry points name the packages they miss instead of failing deep inside an import."""
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from common import requirements

ROOT = Path(__file__).resolve().parents[1]


def test_require_names_every_missing_distribution(monkeypatch, capsys):
    real = importlib.metadata.version

    def version(name):
        if name in ("datasets", "dvc"):
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    with pytest.raises(SystemExit) as err:
        requirements.require("train")
    assert err.value.code == 2
    line = capsys.readouterr().err
    assert "train needs datasets, which is not installed" in line and "make wheelhouse" in line
    with pytest.raises(SystemExit):
        requirements.require("replicate")
    assert "replicate needs datasets, dvc, which are not installed" in capsys.readouterr().err
    assert requirements.missing(("torch", "numpy")) == []


def test_training_cli_without_datasets_says_so(tmp_path):
    """A machine without `datasets` (as our GPU machine): the real CLI exits 2 naming it."""
    block = tmp_path / "sitecustomize.py"  # hides the distribution from importlib.metadata in the child
    block.write_text("import importlib.metadata as m\n_v = m.version\n"
                     "def version(name):\n    if name == 'datasets':\n        raise m.PackageNotFoundError(name)\n"
                     "    return _v(name)\nm.version = version\n")
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "common.train", "x.yaml", "--out", str(tmp_path / "run")], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "train needs datasets" in out.stderr and not (tmp_path / "run").exists()
