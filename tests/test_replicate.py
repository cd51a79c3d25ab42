import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _replicate(*args):
    return subprocess.run([sys.executable, "-m", "common.replicate", *args], cwd=ROOT, capture_output=True, text=True)


def test_a_paper_without_its_pipeline_fails_clearly(tmp_path, monkeypatch, capsys):
    from common import replicate
    monkeypatch.setattr(replicate, "ROOT", tmp_path)  # a checkout where papers/lom has no dvc.yaml
    assert replicate.main(["--paper", "lom"]) == 2
    err = capsys.readouterr().err
    assert "papers/lom is not implemented yet" in err and "Nothing was trained" in err


def test_unknown_paper_is_named():
    out = _replicate("--paper", "monet")
    assert out.returncode == 2 and "unknown paper 'monet'" in out.stderr


def test_unknown_dataset_is_named_with_the_choices():
    out = _replicate("--paper", "emorl", "--dataset", "clevr7")
    assert out.returncode == 2 and "no dataset 'clevr7'" in out.stderr and "clevr10" in out.stderr


def test_an_unknown_stage_is_named_with_the_per_dataset_stages():
    out = _replicate("--paper", "svq", "--stage", "reprot")
    assert out.returncode == 2 and "no per-dataset stage 'reprot'" in out.stderr and "report_downstream" in out.stderr


def test_a_stage_takes_the_datasets_of_its_own_foreach_list(tmp_path, monkeypatch):
    """SVQ's Tables 4-5: STAGE=report_downstream runs over svq.downstream, not svq.datasets."""
    import common.replicate as replicate
    monkeypatch.setattr(replicate, "LOCK", tmp_path / ".replicate.lock")
    calls = []
    monkeypatch.setattr(replicate.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
    assert replicate.main(["--paper", "svq", "--stage", "report_downstream", "--dataset", "sprites4"]) == 2
    assert replicate.main(["--paper", "svq", "--stage", "report_downstream"]) == 0
    assert calls[-1][3] == "papers/svq/dvc.yaml:report_downstream@sprites_quadrant"  # the first of svq.downstream
    assert replicate.main(["--paper", "svq"]) == 0
    assert calls[-1][3] == "papers/svq/dvc.yaml:report@sprites4"  # params.yaml svq.dataset


def test_every_listed_dataset_has_a_config_and_evaluation_only_ones_name_their_run():
    import yaml
    from common.train.experiment import load_experiment
    for paper, settings in yaml.safe_load((ROOT / "params.yaml").read_text()).items():
        if "datasets" not in settings:
            continue
        only = {e["dataset"]: e["run"] for e in settings.get("evaluation_only", [])}
        # EMORL, IODINE: trained + evaluation-only; SRI: with a GENESIS-v2 baseline + variants without one; SVQ: with
        # priors + variants without; LOM: all
        split = settings.get("trained", settings.get("baselines", settings.get("generative", []))
                             + settings.get("variants", []))
        trained = split if split or only else settings["datasets"]
        assert sorted(settings["datasets"]) == sorted(trained + list(only)), paper
        assert settings["seeds"] and all(isinstance(k, int) for k in settings["seeds"]), paper
        for dataset in settings["datasets"]:
            exp = load_experiment(ROOT / "papers" / paper / "configs" / f"{dataset}.yaml", "smoke")
            assert exp.eval.get("run_of") == only.get(dataset), (paper, dataset)


def test_a_failed_replicate_leaves_params_yaml_as_it_was(tmp_path, monkeypatch):
    """dvc exp run -S writes into params.yaml; a failing run must not leave its settings behind."""
    import common.replicate as replicate
    params = tmp_path / "params.yaml"
    params.write_bytes((ROOT / "params.yaml").read_bytes())
    before = params.read_bytes()
    monkeypatch.setattr(replicate, "PARAMS", params)
    monkeypatch.setattr(replicate, "LOCK", tmp_path / ".replicate.lock")

    def failing_dvc(cmd, **kw):
        params.write_text(params.read_text().replace("profile: smoke", "profile: short"))
        return 1
    monkeypatch.setattr(replicate.subprocess, "call", failing_dvc)
    assert replicate.main(["--paper", "emorl", "--profile", "short"]) == 1
    assert params.read_bytes() == before

    def succeeding_dvc(cmd, **kw):  # a successful experiment keeps its settings, as DVC does
        params.write_text(params.read_text().replace("profile: smoke", "profile: short"))
        return 0
    monkeypatch.setattr(replicate.subprocess, "call", succeeding_dvc)
    assert replicate.main(["--paper", "emorl", "--profile", "short"]) == 0
    assert params.read_bytes() != before


def test_a_second_replicate_in_the_same_workspace_is_refused(tmp_path, monkeypatch):
    import common.replicate as replicate
    monkeypatch.setattr(replicate, "LOCK", tmp_path / ".replicate.lock")
    with replicate.workspace_lock():
        holder = subprocess.run(
            [sys.executable, "-c", "import common.replicate as r, sys; r.LOCK = __import__('pathlib').Path(sys.argv[1]);"
             "r.subprocess.call = lambda *a, **k: 0; sys.exit(r.main(['--paper', 'emorl']))", str(tmp_path / ".replicate.lock")],
            cwd=ROOT, capture_output=True, text=True)
        assert holder.returncode == 2 and "another make replicate is running in this workspace (pid" in holder.stderr
    with replicate.workspace_lock():  # released: the next one runs
        pass


@pytest.mark.parametrize("paper", ["sri", "lom"])
def test_only_shapestacks_evaluations_wait_for_the_s_acc_judge(paper):
    """Each config is evaluated by one DVC stage, and that stage depends on the S-Acc judge exactly when the
    evaluation scores with it (`s_acc_judge`): a CLEVR6 or Objects Room run never trains a judge it does not use."""
    import yaml
    from common.profile_judge import s_acc_judge
    from common.train.experiment import load_experiment
    settings = yaml.safe_load((ROOT / "params.yaml").read_text())[paper]
    stages = yaml.safe_load((ROOT / "papers" / paper / "dvc.yaml").read_text())["stages"]
    judge = f"runs/judges/s_acc-${{{paper}.profile}}"
    evaluated = []
    for name, stage in stages.items():
        if f"papers.{paper}.pipeline evaluate " not in stage.get("cmd", ""):
            continue
        datasets = settings[stage["matrix"]["dataset"].removeprefix(f"${{{paper}.").removesuffix("}")]
        evaluated += datasets
        for dataset in datasets:
            data = load_experiment(ROOT / "papers" / paper / "configs" / f"{dataset}.yaml", "smoke").data.name
            assert (judge in stage["deps"]) == (s_acc_judge(data, "smoke") is not None), (name, dataset)
    assert sorted(evaluated) == sorted(settings["datasets"])
