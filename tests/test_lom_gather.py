"""LOM's figures across configs (papers/lom/gather.py) on hand-written metrics.json files: Fig. 6's table (App. A.5's
Models 0-8, test KL and FID mean ± std over seeds) and Fig. 7's (FID per tau), a model without metrics shown as not
yet run, the figures written, the smoke banner only on the smoke profile; through the pipeline's `gather` stage."""
import json
import math

import pytest

from papers.lom import gather
from papers.lom.pipeline import main

PNG = b"\x89PNG"


def _seed(root, config, profile, seed, kl=None, fid=None, fid_by_tau=None):
    """A metrics.json with only what the gathered reports read."""
    folder = root / "reports/lom" / f"{config}-{profile}" / "seeds" / f"seed{seed}"
    folder.mkdir(parents=True)
    m = {"profile": profile, "steps": 4, "metrics": {"fid": fid, "n": 16, "temperature": 0.8},
         "test_kl": {"kl": kl, "n": 16}}
    if fid_by_tau is not None:
        m["fid_by_temperature"] = fid_by_tau
    (folder / "metrics.json").write_text(json.dumps(m))


def _row(report: str, start: str) -> list[str]:
    """The cells of the table row that starts with `start`."""
    line, = [x for x in report.splitlines() if x.startswith(start)]
    return [c.strip() for c in line.strip("|").split("|")]


def _std(v):
    mean = sum(v) / len(v)
    return math.sqrt(sum((x - mean) ** 2 for x in v) / len(v))  # over seeds, ddof 0


def test_fig6_gathers_models_over_seeds_and_marks_the_missing(tmp_path, monkeypatch):
    kls, fids = [10.0, 12.0, 17.0], [50.0, 60.0, 70.0]
    for seed, (kl, fid) in enumerate(zip(kls, fids)):
        _seed(tmp_path, "objects_room48_m0", "smoke", seed, kl, fid)
    _seed(tmp_path, "objects_room48_m8", "smoke", 3, 40.0, None)  # one seed, its FID deferred
    monkeypatch.setenv("OCREPRO_OUTPUT_ROOT", str(tmp_path))
    assert main(["gather", "--dataset", "ablation", "--profile", "smoke"]) == 0
    out = tmp_path / "reports/lom/ablation-smoke"
    report = (out / "report.md").read_text()
    model0 = _row(report, "| 0 (`objects_room48_m0`)")
    assert model0[2] == f"{sum(kls) / 3:.1f} ± {_std(kls):.1f}" == "13.0 ± 2.9"
    assert model0[3] == f"{sum(fids) / 3:.1f} ± {_std(fids):.1f}" == "60.0 ± 8.2"
    assert model0[4] == "0, 1, 2"
    assert _row(report, "| 8 (`objects_room48_m8`)")[2:] == ["40.0", "—", "3"]  # one seed: no ±; no FID
    for k in range(1, 8):
        assert _row(report, f"| {k} (`objects_room48_m{k}`)")[2:] == ["not yet run", "not yet run", "—"]
    assert "not a replication" in report and "![Fig. 6](fig6.png)" in report
    assert (out / "fig6.png").read_bytes()[:4] == PNG


def test_fig7_curves_are_the_mean_and_std_per_tau_and_the_banner_is_smoke_only(tmp_path):
    _seed(tmp_path, "objects_room", "short", 0, fid_by_tau={"fid": {"0.6": 70.0, "0.8": 60.0, "1.0": 80.0}, "n": 16})
    _seed(tmp_path, "objects_room", "short", 1, fid_by_tau={"fid": {"0.6": 74.0, "0.8": 64.0, "1.0": 90.0}, "n": 16})
    _seed(tmp_path, "objects_room", "short", 2, fid_by_tau={"status": "not computed: FID deferred"})  # left out
    runs = gather.gather(tmp_path / "reports/lom", gather.TEMPERATURE, "short")
    assert gather.temperature_curve(runs["objects_room"]) == {0.6: [70.0, 74.0], 0.8: [60.0, 64.0], 1.0: [80.0, 90.0]}
    assert runs["objects_room_genv2_g"] == {}
    report = gather.write(tmp_path / "reports/lom", "temperature", "short").read_text()
    assert "| model | tau = 0.6 | tau = 0.8 | tau = 1.0 | seeds |" in report
    assert _row(report, "| LOM-EMORL")[1:] == ["72.0 ± 2.0", "62.0 ± 2.0", "85.0 ± 5.0", "0, 1"]
    assert _row(report, "| LOM-GENv2-G")[1:] == ["not yet run"] * 3 + ["—"]
    assert "not a replication" not in report  # a short run's numbers carry no smoke banner
    assert (tmp_path / "reports/lom/temperature-short/fig7.png").read_bytes()[:4] == PNG


def test_a_figure_with_no_run_at_all_is_written_and_an_unknown_one_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OCREPRO_OUTPUT_ROOT", str(tmp_path))
    assert main(["gather", "--dataset", "temperature", "--profile", "paper"]) == 0
    report = (tmp_path / "reports/lom/temperature-paper/report.md").read_text()
    assert "No model has an evaluated seed yet." in report and report.count("not yet run") == 2 * 5  # 2 models x 5 tau
    assert main(["gather", "--dataset", "fig8", "--profile", "paper"]) == 2
    assert "no LOM figure 'fig8'" in capsys.readouterr().err


@pytest.mark.parametrize("v, text", [([], "—"), ([3.0], "3.0"), ([1.0, 3.0], "2.0 ± 1.0")])
def test_mean_std_over_seeds(v, text):
    assert gather.mean_std(v) == text
