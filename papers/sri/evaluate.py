"""SRI evaluation (§5, App. A.4.3, A.5) of a run and of its GENESIS-v2 baseline on the same data: the shared
generative evaluation (`common.evaluate_generative`: FID/KID on N samples against N test scenes, -ELBO in
bits/dim, ARI-FG on 320 test scenes), S-Acc on ShapeStacks samples by the learned judge
(`common.metrics.judges`) over the paper's 100 samples and over 1,000, the consistency of the generation
order (a measure the paper only shows as pictures), and the figures of Figs. 4-5, 12, 13 and 15.
Writes reports/sri/<dataset>-<profile>/seeds/seed<k>/metrics.json.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

from common.config import from_dict
from common.evaluate import device_of, eval_device, load_run
from common.evaluate_generative import draw, s_acc
from common.evaluate_generative import run as generative_evaluation
from common.metrics.generative import generation_order
from common.pipeline import ROOT, Stage
from common.profile_judge import s_acc_judge
from common.train.experiment import load_scenes
from common.train.loop import to_float_images
from common.viz import colour_masks, grid, save_png
from papers.sri.model import SRI

GENESIS_CONFIGS = ROOT / "common" / "models" / "configs" / "genesis_v2"


@dataclass
class SRIEval:
    n_samples: int = 10_000  # FID/KID: samples and test scenes (App. A.4.3)
    bpd_n: int = 5_000  # -ELBO in bits/dim (Tables 1, 3, 4)
    ari_n: int = 320  # ARI-FG (checked 5.2)
    s_acc_n: int = 1_000  # S-Acc over this many samples, and over the paper's 100 (§5.3)
    s_acc_paper_n: int = 100
    order_n: int = 256  # samples for the generation-order measure
    temperature: float = 1.0  # App. A.5: tau = 1 for every evaluation
    temperatures: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25)  # Fig. 13
    other_slots: tuple[int, ...] = (5, 7, 11)  # Fig. 12: K at test time
    quantisation: str = "truncate_signed"  # SRI's compute_fid (checked 5.2; common.metrics.generative)
    batch_size: int = 100
    seed: int = 0


NO_BASELINE = ("none of its own: a Table 3 ablation, SRI-SA* and SRI-EMORL are compared with the SRI and EMORL "
               "configs of their dataset (SRI-EMORL with clevr6_emorl_baseline); Table 4's GENv2 + scene variable "
               "and EMORL (*_emorl_baseline) are themselves baselines")


def baseline_stage(stage: Stage) -> Stage | None:
    """GENESIS-v2 with its autoregressive prior and the same likelihood (Table 2's GENv2-G / GENv2-MoG rows) on
    this stage's data, from the shared config; None for `params.yaml`'s `sri.variants`: the Table 3 ablations
    (a switch of Table 3 off), SRI-SA* (Table 1 compares it with SRI-MoG), SRI-EMORL, and the baselines that
    are configs themselves (Table 4's GENv2 + scene variable, EMORL's `*_emorl_baseline`)."""
    exp = stage.experiment()
    mc = exp.model_config
    ablation = not all(mc.get(k, True) for k in ("scene_variable", "order_alignment", "cross_order_kl"))
    if exp.model != "papers.sri.model:SRI" or mc.get("backbone", "genesis_v2") != "genesis_v2" or ablation:
        return None
    flavour = "g" if mc.get("genesis_v2", {}).get("likelihood") == "gaussian" else "mog"
    steps = f"train.steps={exp.train.steps}"  # App. A.4: "the same setup as SRI" (CLEVR6: 425K, not GENv2's 500K)
    return dataclasses.replace(stage, dataset=f"{stage.dataset}_genv2", overrides=(*stage.overrides, steps),
                               config_file=GENESIS_CONFIGS / f"{exp.data.name}_{flavour}.yaml")


@torch.no_grad()
def figures(model, out: Path, cfg: SRIEval, test: dict, generator: torch.Generator) -> dict:
    """Fig. 13 (temperature sweep), Fig. 12 (other K at test time), Fig. 15 (imagination vs aligned posterior)."""
    rows = []
    for tau in cfg.temperatures:
        s = model.sample(8, tau, generator=generator)
        rows += [s["images"].cpu(), colour_masks(s["masks"].cpu())]
    paths = {"temperatures": save_png(grid(rows), out / "temperatures.png", scale=2)}
    if isinstance(model, SRI):  # samples with another K, and the imagination rollouts
        rows = []
        for k in cfg.other_slots:
            s = model.sample(8, cfg.temperature, generator=generator, num_slots=k)
            rows += [s["images"].cpu(), colour_masks(s["masks"].cpu())]
        paths["other_slots"] = save_png(grid(rows), out / "other_slots.png", scale=2)
        x = to_float_images(test["image"][:8]).to(device_of(model))
        t = model.infer(x)
        rows = [x.cpu()]
        for z in (t["z"], t["z_pi"]):
            if z is not None:
                rgb, log_m = model.decode(z)
                rows += [(log_m.exp() * rgb).sum(1).cpu(), colour_masks(log_m.exp().cpu())]
        paths["imagination"] = save_png(grid(rows), out / "imagination.png", scale=2)
    return {k: str(p.name) for k, p in paths.items()}


def evaluate_run(run_dir: Path, cfg: SRIEval, out: Path, judge: Path | None) -> dict:
    """The whole evaluation of one trained run into `out` (metrics.json and figures)."""
    args = SimpleNamespace(run=run_dir, n=cfg.n_samples, temperature=cfg.temperature, quantisation=cfg.quantisation,
                           bpd_n=cfg.bpd_n, ari_n=cfg.ari_n, cache=None, seed=cfg.seed, out=out)
    generative_evaluation(args)  # writes out/metrics.json, samples.png (Figs. 4-5), decomposition.png
    record = json.loads((out / "metrics.json").read_text())
    exp, model = load_run(run_dir)
    model = model.to(eval_device()).eval()
    generator = torch.Generator(device=device_of(model)).manual_seed(cfg.seed + 1)
    record["generation_order"] = generation_order(draw(model, cfg.order_n, cfg.temperature, generator,
                                                       cfg.batch_size)["masks"])
    if judge is not None:
        record["s_acc"] = s_acc(model, judge, cfg.s_acc_n, cfg.s_acc_paper_n, cfg.temperature, cfg.quantisation,
                                cfg.batch_size, generator)
    _, test = load_scenes(exp.data, exp.data.eval_split, 8)
    record["figures"] = figures(model, out, cfg, test, generator)
    (out / "metrics.json").write_text(json.dumps(record, indent=2))
    return record


def evaluate(stage: Stage) -> Path:
    """The SRI run of this stage and, when trained, its GENESIS-v2 baseline (in baseline/)."""
    exp = stage.experiment()
    cfg = from_dict(SRIEval, exp.eval, "eval")
    judge = s_acc_judge(exp.data.name, stage.profile)
    out = stage.seed_dir
    out.mkdir(parents=True, exist_ok=True)
    record = evaluate_run(stage.run_dir, cfg, out, judge)
    record.update(dataset=stage.dataset, config=exp.model_config, eval=dataclasses.asdict(cfg))
    base = baseline_stage(stage)
    if base is None:
        record["baseline"] = {"status": NO_BASELINE}
    elif (base.run_dir / "model").is_dir():
        record["baseline"] = {**evaluate_run(base.run_dir, cfg, out / "baseline", judge),
                              "label": f"GENESIS-v2, autoregressive prior ({base.config_path.name})"}
    else:
        record["baseline"] = {"status": f"not trained: python -m papers.sri.pipeline baseline --dataset {stage.dataset} "
                                        f"--profile {stage.profile} --seed {stage.seed}"}
    (out / "metrics.json").write_text(json.dumps(record, indent=2))
    return out / "metrics.json"
