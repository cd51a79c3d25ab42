"""The results of record (reports/README.md) are generated from metrics files and cannot drift."""
import json
from pathlib import Path

import pytest

from common.report import training_summary
from papers import results
from papers.results import Claim

ROOT = Path(__file__).resolve().parents[1]


def test_committed_table_matches_the_metrics_files():
    assert results.main(["--check"]) == 0, "run `python -m papers.results` and commit reports/README.md"


def _write(root, paper, folder, **metrics):
    path = root / "reports" / paper / folder / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics))


def test_rows_aggregate_seeds_and_never_show_smoke(tmp_path, monkeypatch):
    claim = Claim("tetrominoes", "ARI-FG (%)", 98.2, 1.8, 5, "Table 1", "metrics.ari_fg", 100)
    monkeypatch.setattr(results, "claims", lambda paper: [claim] if paper == "emorl" else [])
    common = {"steps": 2000, "hardware": "H100", "commit": "abcdef1234567", "date": "2026-11-22T00:00"}
    _write(tmp_path, "emorl", "tetrominoes-short/seeds/seed0", profile="short", metrics={"ari_fg": 0.90}, **common)
    _write(tmp_path, "emorl", "tetrominoes-short/seeds/seed1", profile="short", metrics={"ari_fg": 0.96}, **common)
    _write(tmp_path, "emorl", "tetrominoes-smoke/seeds/seed0", profile="smoke", metrics={"ari_fg": 0.10}, **common)
    _write(tmp_path, "emorl", "tetrominoes-paper/seeds/seed0", profile="smoke", metrics={"ari_fg": 0.20}, **common)  # mislabelled
    rows = [r.strip("| ").split(" | ") for r in results.table(tmp_path).splitlines()[2:]]
    assert [r[5] for r in rows] == ["short", "paper"]  # no smoke profile row
    short, paper = rows
    assert short[6] == "93 ± 3" and short[7] == "2" and short[4] == "98.2 ± 1.8 (5 seeds)"  # mean, std (ddof 0)
    assert short[8:11] == ["2000", "H100", "abcdef1234"] and short[11] == "2026-11-22"
    assert paper[6] == "not yet run"  # a smoke metrics file in a paper folder never counts


def test_a_null_value_is_a_run_not_a_missing_one(tmp_path, monkeypatch):
    """steps_to_target is null when a run never reached the target: that run exists, and says so."""
    claim = Claim("sprites", "steps to 98 %", 4000, None, None, "Table 4", "metrics.steps_to_target")
    monkeypatch.setattr(results, "claims", lambda paper: [claim] if paper == "svq" else [])
    meta = {"profile": "short", "steps": 5000, "hardware": "H100", "commit": "abc", "date": "2026-11-22"}
    _write(tmp_path, "svq", "sprites-short/seeds/seed0", metrics={"steps_to_target": None}, **meta)
    short = [r.strip("| ").split(" | ") for r in results.table(tmp_path).splitlines()[2:]][0]
    assert short[6:8] == ["null in every run", "1"]
    _write(tmp_path, "svq", "sprites-short/seeds/seed1", metrics={"steps_to_target": 3000}, **meta)
    _write(tmp_path, "svq", "sprites-short/seeds/seed2", metrics={"steps_to_target": 2000}, **meta)
    short = [r.strip("| ").split(" | ") for r in results.table(tmp_path).splitlines()[2:]][0]
    assert short[6:8] == ["2500 ± 500 (null in 1 of 3 runs)", "3"]


def test_update_needs_the_markers():
    with pytest.raises(ValueError, match="markers"):
        results.updated("# no table here\n", "| a |")
    text = f"head\n{results.BEGIN}\nold\n{results.END}\ntail\n"
    assert results.updated(text, "new") == f"head\n{results.BEGIN}\nnew\n{results.END}\ntail\n"


def test_hardware_and_commit_are_those_that_trained_the_run(tmp_path, monkeypatch):
    """A run trained on a GPU in two stretches (the first from before the record) and evaluated on a CPU at
    a later commit: the table names the training hardware, and every commit that trained or evaluated it."""
    claim = Claim("tetrominoes", "ARI-FG (%)", 98.2, 1.8, 5, "Table 1", "metrics.ari_fg", 100)
    monkeypatch.setattr(results, "claims", lambda paper: [claim] if paper == "emorl" else [])
    training = [{"from": 0, "to": 500, "unrecorded": True},
                {"from": 500, "to": 2000, "hardware": "1x NVIDIA H100", "commit": "1111111111aa", "processes": 1,
                 "seconds": 600.0, "date": "2026-11-22T10:00:00+00:00"}]
    _write(tmp_path, "emorl", "tetrominoes-short/seeds/seed0", profile="short", metrics={"ari_fg": 0.9},
           steps=2000, hardware="CPU (x86_64, 2 threads)", commit="2222222222bb", date="2026-11-23", training=training,
           data_source="common.data.tetrominoes")
    _write(tmp_path, "emorl", "tetrominoes-paper/seeds/seed0", profile="paper", metrics={"ari_fg": 0.9},
           data_source="common.data.convert:multi_object_datasets")
    short, paper = [r.strip("| ").split(" | ") for r in results.table(tmp_path).splitlines()[2:]]
    assert short[9:11] == ["1x NVIDIA H100, unrecorded", "1111111111, 2222222222, unrecorded"]
    assert short[12] == "generated" and paper[12] == "published"  # the papers' numbers are on published data
    text = training_summary({0: {"training": training, "data_source": "common.data.tetrominoes"}, 1: {}})
    assert "- seed 0 (scenes: common.data.tetrominoes): steps 0-500: not recorded" in text
    assert ("steps 500-2,000: 1x NVIDIA H100, 1 process(es), commit `1111111111aa`, 10.0 min from "
            "2026-11-22T10:00") in text
    assert "- seed 1: no training record" in text


def test_a_smoke_report_does_not_state_the_short_profiles_counts_as_its_own():
    from papers.sri.paper_results import ARI_LABEL, FID_LABEL
    fid = Claim("shapestacks", FID_LABEL, 70.4, 3, 3, "Table 2", "metrics.fid")
    assert fid.label("short") == fid.label("paper") == FID_LABEL  # the results of record keep the label whole
    assert fid.label("smoke") == "FID (paper: 10,000 samples; ours: this run's counts, stated in this report)"
    ari = Claim("clevr6", ARI_LABEL, 0.97, 0.01, 3, "Table 2", "metrics.ari_fg_decoder")
    assert ari.label("smoke") == "ARI-FG (ours: this run's counts, stated in this report)"
    last = Claim("d", "OOD accuracy (%) (ours: at the last step)", 46.8, None, None, "Table 4", "k")
    assert last.label("smoke") == last.metric  # no count in the clause: true of smoke too
