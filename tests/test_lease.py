"""common.lease: what a time-boxed lease runs, what its bundle carries, and that the bundle comes back intact."""
import hashlib
import io
import json
import os
import random
import sys
import tarfile
import time
from pathlib import Path

import pytest

from common import lease as L
from common import provenance


def _write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """Under the output root: an unfinished main run (checkpoints 10 and 20), a finished sweep run (checkpoint and
    model), a report."""
    root = tmp_path / "root"
    monkeypatch.setenv("OCREPRO_OUTPUT_ROOT", str(root))
    main = root / "runs/emorl/tetrominoes-short/seed0"
    for step in (10, 20):
        _write(main / f"checkpoints/step_{step:08d}/model.safetensors", bytes([step]) * 100)
    _write(main / "config.yaml"), _write(main / "logs/train.tsv")
    sweep = root / "runs/emorl/tetrominoes-short-sweep/seed0/T1"
    _write(sweep / "checkpoints/step_00000005/model.safetensors"), _write(sweep / "model/model.safetensors")
    _write(root / "reports/emorl/tetrominoes-short/seeds/seed0/metrics.json", b"{}")
    _write(root / "reports/emorl/clevr6-short/seeds/seed0/metrics.json", b"{}")  # another dataset: stays
    return root


def test_bundle_keeps_the_latest_checkpoint_of_an_unfinished_run_and_none_of_a_finished_one(runs):
    lease = L.Lease("emorl", "tetrominoes", "short", minutes=9)
    got = sorted(str(p.relative_to(runs)) for p in L.bundle_paths(runs, lease))
    assert got == ["reports/emorl/tetrominoes-short/seeds/seed0/metrics.json",
                   "runs/emorl/tetrominoes-short-sweep/seed0/T1/model/model.safetensors",
                   "runs/emorl/tetrominoes-short/seed0/checkpoints/step_00000020/model.safetensors",
                   "runs/emorl/tetrominoes-short/seed0/config.yaml",
                   "runs/emorl/tetrominoes-short/seed0/logs/train.tsv"]
    assert L.latest_step(runs / "runs/emorl/tetrominoes-short/seed0") == 20


def test_bundle_takes_only_what_changed_since_the_lease_began_besides_its_main_run(runs):
    """Folders and reports older than the lease (unpacked here from an earlier one) do not travel again."""
    old = 1_000_000_000  # 2001
    for f in runs.rglob("*"):
        os.utime(f, (old, old))
    lease = L.Lease("emorl", "tetrominoes", "short", minutes=9)
    fresh = _write(runs / "reports/emorl/tetrominoes-short/seeds/seed0/metrics.json", b'{"new": 1}')
    got = sorted(str(p.relative_to(runs)) for p in L.bundle_paths(runs, lease, since=old + 1))
    assert got == [str(fresh.relative_to(runs)),  # the sweep's folder and old reports stay behind
                   "runs/emorl/tetrominoes-short/seed0/checkpoints/step_00000020/model.safetensors",
                   "runs/emorl/tetrominoes-short/seed0/config.yaml",
                   "runs/emorl/tetrominoes-short/seed0/logs/train.tsv"]


def test_bundle_in_parts_comes_back_byte_for_byte(runs, tmp_path):
    lease = L.Lease("emorl", "tetrominoes", "short", minutes=9)
    files = L.bundle_paths(runs, lease)
    big = _write(runs / "runs/emorl/tetrominoes-short/seed0/checkpoints/step_00000020/optimizer.bin",
                 random.Random(0).randbytes(30_000))  # incompressible: about four parts
    files.append(big)
    out = tmp_path / "out"
    parts = L.write_bundle(runs, files, out, lease.name, part_mib=8 / 1024, max_parts=8)  # 8 KiB parts
    assert len(parts) > 1 and all(p["bytes"] <= 8 * 1024 for p in parts)
    (out / f"{lease.name}.lease.json").write_text(json.dumps({"parts": parts}))
    dest = tmp_path / "dest"
    written = L.unpack([out / p["file"] for p in reversed(parts)], dest)  # order given does not matter
    assert sorted(written) == sorted(str(f.relative_to(runs)) for f in files)
    assert _tree(dest) == {k: v for k, v in _tree(runs).items() if k in written}


def test_unpack_refuses_overwriting_damage_and_unsafe_paths(runs, tmp_path):
    lease = L.Lease("emorl", "tetrominoes", "short", minutes=9)
    out, dest = tmp_path / "out", tmp_path / "dest"
    parts = L.write_bundle(runs, L.bundle_paths(runs, lease), out, lease.name, 16, 8)
    (out / f"{lease.name}.lease.json").write_text(json.dumps({"parts": parts}))
    bundle = out / parts[0]["file"]
    L.unpack([bundle], dest)
    L.unpack([bundle], dest)  # the same bytes again: nothing to refuse
    _write(dest / "runs/emorl/tetrominoes-short/seed0/config.yaml", b"changed here")
    stale = _write(dest / "runs/emorl/tetrominoes-short/seed0/checkpoints/step_00000010/model.safetensors")
    with pytest.raises(L.LeaseError, match="exist already .* with other bytes"):
        L.unpack([bundle], dest)
    L.unpack([bundle], dest, replace=True)
    assert not stale.exists()  # the run folder was replaced whole
    assert (dest / "runs/emorl/tetrominoes-short/seed0/config.yaml").read_bytes() == b"x"
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 1  # one flipped bit
    bundle.write_bytes(bytes(data))
    with pytest.raises(L.LeaseError, match="damaged in transit"):
        L.unpack([bundle], tmp_path / "elsewhere")
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    _write(tmp_path / "evil.tar.gz", evil.getvalue())
    with pytest.raises(L.LeaseError, match="only relative paths"):
        L.unpack([tmp_path / "evil.tar.gz"], dest)
    assert not (tmp_path / "escape.txt").exists()


def test_a_bundle_over_its_parts_is_refused_and_nothing_is_written(runs, tmp_path):
    lease = L.Lease("emorl", "tetrominoes", "short", minutes=9)
    _write(runs / "runs/emorl/tetrominoes-short/seed0/checkpoints/step_00000020/optimizer.bin",
           random.Random(1).randbytes(4_000))
    with pytest.raises(L.LeaseError, match="more than 2 parts.*largest files: runs/emorl/tetrominoes-short/seed0/"
                                           "checkpoints/step_00000020/optimizer.bin"):
        L.write_bundle(runs, L.bundle_paths(runs, lease), tmp_path / "out", lease.name, 1 / 1024, 2)
    assert not (tmp_path / "out").exists()


class FakeStages:
    """Stands in for common.lease.spawn: records each pipeline command and answers with the exit code given; a
    train stage that succeeds leaves its model, as the pipeline's does."""

    def __init__(self, codes: dict[str, int], root: Path):
        self.codes, self.root, self.calls = codes, root, []

    def __call__(self, cmd, log, env, timeout):
        stage = cmd[3]
        assert 0 < timeout <= 9 * 60  # every stage ends with the lease
        self.calls.append((stage, cmd, env))
        log.write_text(f"{stage} ran\n")
        code = self.codes.get(stage, 0)
        if stage == "train" and code == 0:
            paper, dataset, profile = cmd[2].split(".")[1], cmd[5], cmd[7]
            _write(self.root / f"runs/{paper}/{dataset}-{profile}/seed0/model/model.safetensors")
        return code


def _lease(runs, tmp_path, monkeypatch, codes, **kw) -> tuple[dict, FakeStages]:
    fake = FakeStages(codes, runs)
    monkeypatch.setattr(L, "spawn", fake)
    return L.run(L.Lease(minutes=9, **kw), tmp_path / "out"), fake


def test_training_gets_the_budget_left_and_a_budget_stop_skips_evaluation(runs, tmp_path, monkeypatch):
    summary, fake = _lease(runs, tmp_path, monkeypatch, {"train": L.EXIT_BUDGET}, paper="emorl",
                           dataset="tetrominoes", profile="short", reserve=2, overrides=("train.mixed_precision=bf16",))
    assert [c[0] for c in fake.calls] == ["prepare", "train"]
    train = fake.calls[1][1]
    assert train[2:] == ["papers.emorl.pipeline", "train", "--dataset", "tetrominoes", "--profile", "short", "--seed",
                         "0", "--set", "train.mixed_precision=bf16", "--max-minutes", train[-1]]
    assert 6.9 < float(train[-1]) <= 7.0  # 9 minutes less the 2 reserved, less what prepare took
    assert not summary["trained"] and not summary["evaluated"] and summary["step"] == 20
    assert [s["status"] for s in summary["stages"]] == ["done", "budget spent"]
    assert L.exit_status(summary) == L.EXIT_BUDGET  # to be resumed
    written = json.loads((tmp_path / "out" / "emorl-tetrominoes-short-seed0.lease.json").read_text())
    assert written["parts"] == summary["parts"] and (tmp_path / "out" / summary["parts"][0]["file"]).is_file()


def test_a_finished_training_runs_the_extra_stages_then_evaluation_and_report(runs, tmp_path, monkeypatch):
    summary, fake = _lease(runs, tmp_path, monkeypatch, {}, paper="iodine", dataset="tetrominoes", profile="short",
                           extra=("sweep",))
    assert [c[0] for c in fake.calls] == ["prepare", "train", "sweep", "evaluate", "report"]
    assert 6.4 < float(fake.calls[2][2]["OCREPRO_MAX_MINUTES"]) <= 6.5  # what is left before the last bundle
    assert all(env["TQDM_MININTERVAL"] == "5" for _, _, env in fake.calls)  # short logs
    assert summary["trained"] and summary["evaluated"] and L.exit_status(summary) == 0
    logs = list((runs / "reports/iodine/tetrominoes-short/leases").glob("seed0-*/evaluate.log"))
    assert len(logs) == 1 and logs[0].read_text() == "evaluate ran\n"


def _finished(stage, run_dir: Path | None = None, **settings) -> Path:
    """A finished run of `stage` as the training CLI leaves it: its model and the config it trained under."""
    from common.config import parse_overrides
    from common.pipeline import data_path
    from common.train.experiment import load_experiment, write_config
    run_dir = run_dir or stage.run_dir
    overrides = [f"data.path={data_path(stage)}", *stage.settings, *(f"{k}={v}" for k, v in settings.items())]
    write_config(load_experiment(stage.config_path, stage.profile, parse_overrides(overrides)), run_dir / "config.yaml")
    _write(run_dir / "model/model.safetensors")
    return run_dir


def test_a_trained_run_is_not_trained_again_and_a_failed_stage_ends_the_lease(runs, tmp_path, monkeypatch):
    """The pipeline's train stage replaces a finished run: a second lease after a failed evaluation must not."""
    _finished(L.Lease("emorl", "tetrominoes", "short", minutes=9).stage)
    summary, fake = _lease(runs, tmp_path, monkeypatch, {"baseline": 1}, paper="emorl", dataset="tetrominoes",
                           profile="short", extra=("baseline", "sweep"))
    assert [c[0] for c in fake.calls] == ["prepare", "baseline"]  # no train, nothing after the failure
    assert [(s["stage"], s["status"]) for s in summary["stages"]] == [
        ("prepare", "done"), ("train", "already trained"), ("baseline", "failed")]
    assert summary["trained"] and not summary["evaluated"] and L.exit_status(summary) == 1
    assert all(env["OCREPRO_KEEP_FINISHED"] == "1" for _, _, env in fake.calls)  # the baseline's run is kept too


def test_a_lease_run_again_keeps_the_sweep_models_it_finished_and_trains_the_rest(runs, monkeypatch):
    """IODINE's sweep trains a model per T: a lease that stopped during T2 must not retrain T1 when run again,
    while DVC's sweep (no $OCREPRO_KEEP_FINISHED) retrains every T, and a T1 of other steps is trained again."""
    import common.train.__main__ as cli
    from common.pipeline import Stage
    from papers.iodine.evaluate import sweep, sweep_dir
    trained = []
    monkeypatch.setattr(cli, "run", lambda args, **rows: trained.append(args.out.name) or args.out)
    stage = Stage("iodine", "tetrominoes", "short")
    t1 = _finished(stage, sweep_dir(stage) / "T1", **{"model_config.iterations": 1})
    monkeypatch.setenv("OCREPRO_KEEP_FINISHED", "1")
    sweep(stage)
    assert trained == ["T2", "T4", "T6"] and (t1 / "model").is_dir()
    _finished(stage, t1, **{"model_config.iterations": 1, "train.steps": 10})
    trained.clear(), sweep(stage)
    assert trained == ["T1", "T2", "T4", "T6"]  # trained to other steps: not the run this config asks for
    _finished(stage, t1, **{"model_config.iterations": 1})
    monkeypatch.delenv("OCREPRO_KEEP_FINISHED")
    trained.clear(), sweep(stage)
    assert trained == ["T1", "T2", "T4", "T6"] and not t1.exists()  # outside a lease, a finished run is replaced


def test_a_lease_that_cannot_train_or_bundle_still_says_why(runs, tmp_path, monkeypatch):
    def spent(lease, elapsed_s):
        raise L.LeaseError("no time left to train: (test)")
    monkeypatch.setattr(L, "training_minutes", spent)
    summary, fake = _lease(runs, tmp_path, monkeypatch, {}, paper="emorl", dataset="tetrominoes", profile="short")
    assert [c[0] for c in fake.calls] == ["prepare"] and summary["stages"][-1]["status"].startswith("skipped: no time")
    assert json.loads((tmp_path / "out/emorl-tetrominoes-short-seed0.lease.json").read_text())["stages"][-1] == \
        summary["stages"][-1]
    _write(runs / "runs/emorl/tetrominoes-short/seed0/checkpoints/step_00000020/optimizer.bin",
           random.Random(2).randbytes(40_000))
    over = L.bundle(L.Lease("emorl", "tetrominoes", "short", minutes=9), runs, None, 0.0, tmp_path / "out2",
                    part_mib=1, max_parts=7, max_total_mib=0.01)
    assert "0.01 MiB in all" in over["bundle_error"] and over["parts"] == [] and L.exit_status(over) == 2
    assert json.loads((tmp_path / "out2/emorl-tetrominoes-short-seed0.lease.json").read_text())["bundle_error"]


def test_a_stage_past_the_leases_end_is_stopped(tmp_path):
    start = time.monotonic()
    code = L.spawn([sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "log", {}, timeout=0.5)
    assert code == L.EXIT_TIMEOUT and time.monotonic() - start < 10


def test_a_spent_budget_and_bad_arguments_are_refused(capsys):
    with pytest.raises(L.LeaseError, match="no time left to train"):
        L.training_minutes(L.Lease("emorl", "tetrominoes", "short", minutes=3, reserve=2), elapsed_s=61)
    assert L.main(["run", "--paper", "emorl", "--dataset", "tetrominoes", "--minutes", "0", "--out", "x"]) == 2
    assert "--minutes must be > 0" in capsys.readouterr().err


def test_a_tree_without_git_names_its_commit_from_its_stamp_and_says_dirty_when_a_file_differs(tmp_path, monkeypatch):
    stamp = provenance.write_stamp(tmp_path / "stamp.json")  # of this repository
    listed = json.loads(stamp.read_text())
    assert listed["commit"] == provenance.git_commit() and "common/lease.py" in listed["files"]
    assert not any(f.startswith("reports/") or f.endswith("dvc.lock") for f in listed["files"])  # results, not code
    copy = tmp_path / "copy"  # not inside any repository: as the tree a lease receives
    monkeypatch.setattr(provenance, "ROOT", copy)
    monkeypatch.delenv(provenance.COMMIT_ENV, raising=False)
    _write(copy / "common/a.py", b"code"), _write(copy / "papers/b.py", b"more")
    assert provenance.git_commit() == "unknown"
    monkeypatch.setenv(provenance.COMMIT_ENV, "086a558")  # stated, where there is no stamp
    assert provenance.git_commit() == "086a558"
    files = {f: hashlib.sha256((copy / f).read_bytes()).hexdigest() for f in ("common/a.py", "papers/b.py")}
    (copy / provenance.STAMP).write_text(json.dumps({"commit": "5f1e2d3", "files": files}))
    assert provenance.git_commit() == "5f1e2d3"  # the stamp wins over the stated commit
    _write(copy / "papers/b.py", b"edited there")
    assert provenance.git_commit() == "5f1e2d3-dirty"
    (copy / "papers/b.py").unlink()
    assert provenance.git_commit() == "5f1e2d3-dirty"
    (copy / provenance.STAMP).write_text(json.dumps({"commit": "5f1e2d3-dirty", "files": files}))
    assert provenance.git_commit() == "5f1e2d3-dirty"  # dirty here already: not twice


def test_the_stamp_command_writes_it_at_the_root(tmp_path, monkeypatch, capsys):
    written = []
    monkeypatch.setattr(L, "write_stamp", lambda: written.append(1) or provenance.write_stamp(tmp_path / "s.json"))
    assert L.main(["stamp"]) == 0 and written == [1]
    assert provenance.git_commit() in capsys.readouterr().out


def test_a_stage_log_tail_shows_one_progress_line():
    log = "resuming\n 10%| 1/10 [00:01, 1.00it/s]\r 20%| 2/10 [00:02, 1.00it/s]\r 30%| 3/10 [00:03, 2.00s/it]\ndone\n"
    assert L._last_lines(log, 8) == ["resuming", " 30%| 3/10 [00:03, 2.00s/it]", "done"]
    assert L._last_lines(log, 2) == [" 30%| 3/10 [00:03, 2.00s/it]", "done"]


@pytest.mark.slow
def test_a_real_lease_stops_at_its_budget_and_resumes_from_its_bundle_elsewhere(tmp_path, monkeypatch):
    """EMORL smoke through the real pipeline: a budget stop packs the checkpoint; unpacked under another output
    root (where the data lands at another path), the same lease resumes it, finishes and evaluates."""
    settings = dict(overrides=("train.steps=4", "train.save_every=2", "train.log_every=1"), report=False)
    budget = L.training_minutes
    monkeypatch.setattr(L, "training_minutes", lambda lease, elapsed_s: 0.01)  # stops after its first step
    monkeypatch.setenv("OCREPRO_OUTPUT_ROOT", str(tmp_path / "a"))
    first = L.run(L.Lease("emorl", "tetrominoes", "smoke", minutes=30, **settings), tmp_path / "out")
    assert [s["status"] for s in first["stages"]] == ["done", "budget spent"] and first["step"] < 4
    monkeypatch.setattr(L, "training_minutes", budget)
    monkeypatch.setenv("OCREPRO_OUTPUT_ROOT", str(tmp_path / "b"))
    L.unpack([tmp_path / "out" / p["file"] for p in first["parts"]], tmp_path / "b")
    second = L.run(L.Lease("emorl", "tetrominoes", "smoke", minutes=30, **settings), tmp_path / "out2")
    assert second["trained"] and second["evaluated"] and second["step"] == 4
    run = tmp_path / "b/runs/emorl/tetrominoes-smoke/seed0"
    segments = json.loads((run / "model/training.json").read_text())["segments"]
    assert [(s["from"], s["to"]) for s in segments] == [(0, first["step"]), (first["step"], 4)]
    assert (tmp_path / "b/reports/emorl/tetrominoes-smoke/seeds/seed0/metrics.json").is_file()
