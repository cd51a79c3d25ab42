import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _replicate(*args):
    return subprocess.run([sys.executable, "-m", "common.replicate", *args], cwd=ROOT, capture_output=True, text=True)


def test_unimplemented_paper_fails_clearly():
    if (ROOT / "papers" / "lom" / "dvc.yaml").exists():
        return
    out = _replicate("--paper", "lom")
    assert out.returncode == 2 and "not implemented yet" in out.stderr and "Nothing was trained" in out.stderr


def test_unknown_paper_is_named():
    out = _replicate("--paper", "monet")
    assert out.returncode == 2 and "unknown paper 'monet'" in out.stderr
