"""EfficientMORL evaluation (§4, App. E): ARI-FG, MSE and KL on held-out scenes for test-time
I = 0..6 (Table 1, Fig. 7), the ratio ARI(I=0) / ARI(I=1) (§4.2: 99.1 %), DCI and activeness
(Table 3, Fig. 9), and the figures of Fig. 5 (decompositions), Fig. 6 (intermediate posteriors) and
Fig. 9a (latent traversals). Writes reports/emorl/<dataset>-<profile>/metrics.json.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from common.config import from_dict
from common.data import load_meta
from common.metrics import activeness, ari_fg, dci, mse
from common.metrics.dci import slot_factor_table
from common.pipeline import Stage, data_path
from common.provenance import provenance
from common.train.experiment import load_scenes
from common.train.loop import to_float_images
from common.viz import colour_masks, grid, save_decomposition, save_png
from common.models import SlotAttentionAutoEncoder
from papers.emorl.model import EfficientMORL


@dataclass
class EMORLEval:
    refinement_sweep: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    num_slots: int | None = None  # K at test time (Fig. 7c: 11 on CLEVR10)
    batch_size: int = 32
    dci: bool = True
    activeness_images: int = 100
    activeness_steps: int = 10  # values swept per dimension between its min and max
    baseline: bool = True  # compare DCI/activeness with the Slot Attention baseline when it was trained
    dci_factors: tuple[str, ...] | None = None  # factors DCI predicts (None: all the dataset has)
    seed: int = 0


@torch.no_grad()
def run_model(model: EfficientMORL, data: dict, steps: int, batch_size: int, background, seed: int):
    """ARI-FG, MSE and KL per image for one test-time I; also returns masks and posterior means."""
    torch.manual_seed(seed)
    ari, err, kl, masks, slots = [], [], [], [], []
    for s in range(0, len(data["image"]), batch_size):
        images = to_float_images(data["image"][s:s + batch_size])
        its = model.infer(images, steps)
        m = its["log_masks"][-1].exp().detach()
        recon = (m * its["rgb"][-1].detach()).sum(1)
        ari.append(ari_fg(data["mask"][s:s + batch_size], m, background))
        err.append(mse(images, recon))
        kl.append(its["kl"][-1].detach())
        masks.append(m), slots.append(its["lambda"][-1][..., : model.config.slot_dim].detach())
    return {"ari_fg": torch.cat(ari), "mse": torch.cat(err), "kl": torch.cat(kl),
            "masks": torch.cat(masks), "slots": torch.cat(slots)}


def summary(r: dict) -> dict:
    return {"ari_fg": float(r["ari_fg"].mean()), "ari_fg_std": float(r["ari_fg"].std()),
            "mse": float(r["mse"].mean()), "kl": float(r["kl"].mean()), "n_images": int(len(r["ari_fg"]))}


def baseline_stage(stage: Stage) -> Stage:
    """The Slot Attention baseline trained on this stage's data (configs/<dataset>_slot_attention.yaml)."""
    return Stage(stage.paper, f"{stage.dataset}_slot_attention", stage.profile, stage.overrides)


@torch.no_grad()
def baseline(stage: Stage, data, meta, cfg: EMORLEval) -> dict:
    """Table 3's Slot Attention column on the same scenes: its slots, masks, DCI and activeness."""
    base = baseline_stage(stage)
    if not (base.run_dir / "model").is_dir():
        return {"status": f"not trained: python -m papers.emorl.pipeline baseline --dataset {stage.dataset}"}
    model = SlotAttentionAutoEncoder.from_pretrained(base.run_dir / "model")
    torch.manual_seed(cfg.seed)
    outs = [model(to_float_images(data["image"][s:s + cfg.batch_size]))
            for s in range(0, len(data["image"]), cfg.batch_size)]
    result = {"masks": torch.cat([o.masks for o in outs]), "slots": torch.cat([o.slots for o in outs])}
    ari = ari_fg(data["mask"], result["masks"], meta.background_ids)
    record = {"model": "Slot Attention (common.models)", "steps": base.experiment().train.steps,
              "ari_fg": float(ari.mean())}
    return record | disentanglement(lambda z: model.decode(z)[0], data, meta, result, cfg)


def disentanglement(decode, data, meta, result, cfg: EMORLEval) -> dict:
    """DCI on matched (slot code, object factors) pairs, and activeness of the latent dimensions."""
    out = {}
    specs = [f for f in meta.factors if cfg.dci_factors is None or f.name in cfg.dci_factors]
    if cfg.dci and specs:
        codes, factors, kinds, names = slot_factor_table(
            result["masks"], result["slots"], data["mask"], data["visibility"],
            {s.name: data[f"factor.{s.name}"] for s in specs}, specs, meta.num_background)
        if len(codes) >= 4:
            d = dci(codes, factors, kinds, seed=cfg.seed)
            out["dci"] = {k: d[k] for k in ("disentanglement", "completeness", "informativeness", "n_objects")}
            out["dci"]["factors"] = dict(zip(names, d["informativeness_per_factor"]))
    latents = result["slots"][: cfg.activeness_images]
    act = activeness(decode, latents, steps=cfg.activeness_steps, seed=cfg.seed, batch=cfg.batch_size)
    out["activeness"] = {"per_dim": act.tolist(), "active_dims": int((act > 0.01 * act.max()).sum()),
                         "n_images": int(len(latents))}
    return out


@torch.no_grad()
def figures(model: EfficientMORL, data: dict, out_dir: Path, steps: int, seed: int) -> None:
    """Fig. 5 decompositions, Fig. 6 intermediate posteriors, Fig. 9a traversals."""
    torch.manual_seed(seed)
    images = to_float_images(data["image"][:8])
    its = model.infer(images, steps)
    masks, rgb = its["log_masks"][-1].exp().detach(), its["rgb"][-1].detach()
    save_decomposition(out_dir / "decomposition.png", images, (masks * rgb).sum(1), masks, rgb)
    rows = []  # one image: each Stage-1 layer's sample, then each refinement iteration
    for z, attn in zip(its["samples"], its["attention"]):
        r, log_m = model.decode(z[:1].detach())
        h, w = images.shape[2:]
        attn_seg = colour_masks(attn[:1].detach().transpose(1, 2).reshape(1, -1, 1, h, w))
        rows.append(torch.cat([images[:1], (log_m.exp() * r).sum(1), colour_masks(log_m.exp()), attn_seg]))
    for log_m, r in zip(its["log_masks"][1:], its["rgb"][1:]):
        rows.append(torch.cat([images[:1], (log_m[:1].exp() * r[:1]).sum(1), colour_masks(log_m[:1].exp()),
                               torch.ones_like(images[:1])]).detach())
    save_png(grid(rows), out_dir / "intermediate_posteriors.png", scale=2)
    slots = its["lambda"][-1][:1, :, : model.config.slot_dim].detach()  # [1,K,D]
    k = int(masks[0, :, 0].sum((1, 2)).argmax())  # the slot with the largest mask
    dims = list(range(min(8, model.config.slot_dim)))
    rows = []
    for d in dims:
        z = slots.repeat(7, 1, 1)
        z[:, k, d] = torch.linspace(-2, 2, 7)
        rows.append(model.decode_image(z))
    save_png(grid(rows), out_dir / "traversals.png", scale=2)


def evaluate(stage: Stage) -> Path:
    exp = stage.experiment()
    cfg = from_dict(EMORLEval, exp.eval, "eval")
    model = EfficientMORL.from_pretrained(stage.run_dir / "model")
    if cfg.num_slots is not None:  # K is not baked into the weights: z^0 is sampled per slot
        model.config = dataclasses.replace(model.config, num_slots=cfg.num_slots)
    path = data_path(stage)
    meta = load_meta(path)
    _, data = load_scenes(dataclasses.replace(exp.data, path=str(path)), exp.data.eval_split, exp.data.n_eval)
    test_steps = model.refinement_steps(None)
    sweep = {}
    for steps in sorted(set(cfg.refinement_sweep) | {test_steps}):
        sweep[steps] = run_model(model, data, steps, cfg.batch_size, meta.background_ids, cfg.seed)
    main = sweep[test_steps]
    record = {
        "paper": "emorl", "dataset": stage.dataset, "profile": stage.profile, "steps": exp.train.steps,
        "seed": exp.train.seed, "num_slots": model.config.num_slots, "test_refinement_steps": test_steps,
        "metrics": summary(main),
        "refinement_sweep": {str(i): summary(r) for i, r in sweep.items()},
        **disentanglement(model.decode_image, data, meta, main, cfg), **provenance(),
    }
    if cfg.baseline:
        record["baseline"] = baseline(stage, data, meta, cfg)
    if 0 in sweep and 1 in sweep:
        record["ari_ratio_i0_over_i1"] = float(sweep[0]["ari_fg"].mean() / sweep[1]["ari_fg"].mean())
    stage.report_dir.mkdir(parents=True, exist_ok=True)
    figures(model, data, stage.report_dir, test_steps, cfg.seed)
    out = stage.report_dir / "metrics.json"
    out.write_text(json.dumps(record, indent=2))
    return out
