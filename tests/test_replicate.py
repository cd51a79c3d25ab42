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


def test_unknown_dataset_is_named_with_the_choices():
    out = _replicate("--paper", "emorl", "--dataset", "clevr7")
    assert out.returncode == 2 and "no dataset 'clevr7'" in out.stderr and "clevr10" in out.stderr


def test_every_listed_dataset_has_a_config_and_evaluation_only_ones_name_their_run():
    import yaml
    from common.train.experiment import load_experiment
    for paper, settings in yaml.safe_load((ROOT / "params.yaml").read_text()).items():
        if "datasets" not in settings:
            continue
        only = {e["dataset"]: e["run"] for e in settings.get("evaluation_only", [])}
        assert settings["datasets"] == settings["trained"] + list(only), paper
        assert settings["seeds"] and all(isinstance(k, int) for k in settings["seeds"]), paper
        for dataset in settings["datasets"]:
            exp = load_experiment(ROOT / "papers" / paper / "configs" / f"{dataset}.yaml", "smoke")
            assert exp.eval.get("run_of") == only.get(dataset), (paper, dataset)
