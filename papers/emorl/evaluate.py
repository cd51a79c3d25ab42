"""EfficientMORL evaluation (§4, App. E): ARI-FG, MSE and KL on held-out scenes for test-time
I = 0..6 (Table 1, Fig. 7), the ratio ARI(I=0) / ARI(I=1) (§4.2: 99.1 %), DCI and activeness
(Table 3, Fig. 9), and the figures of Fig. 5 (decompositions), Fig. 6 (intermediate posteriors) and
Fig. 9a (latent traversals). Writes reports/emorl/<dataset>-<profile>/metrics.json.

A config with `eval.run_of` evaluates another dataset's run: Fig. 7c's CLEVR10 is the CLEVR6-trained
model run with K = 11 on scenes with 7-10 objects.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from common.config import ConfigError, from_dict
from common.data import load_meta
from common.evaluate import device_of, eval_device, load_run
from common.metrics import activeness, ari_fg, dci, mse
from common.metrics.dci import select_factors, slot_factor_table
from common.pipeline import Stage, data_path, output_root
from common.provenance import provenance
from common.train.experiment import load_scenes
from common.train.loop import to_float_images
from common.viz import colour_masks, grid, save_decomposition, save_png
from papers.emorl.model import EfficientMORL


@dataclass
class EMORLEval:
    refinement_sweep: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    num_slots: int | None = None  # K at test time (Fig. 7c: 11 on CLEVR10)
    run_of: str | None = None  # evaluate this dataset's trained run instead of training one (Fig. 7c: clevr6)
    batch_size: int = 32
    dci: bool = True
    dci_estimators: tuple[str, ...] = ("paper",)  # and/or "official" (the released code's, CLEVR6 only)
    activeness_images: int = 100  # 0: no activeness
    activeness_steps: int = 10  # values swept per dimension between its min and max
    baseline: bool = True  # compare DCI/activeness with the Slot Attention baseline when it was trained
    dci_factors: tuple[str, ...] | None = None  # factors DCI predicts (None: all the dataset has)
    traversal_dims: int = 8  # latent dimensions traversed in traversals.png (Fig. 9a)
    ari_upsample: int | None = None  # also ARI-FG with predicted masks upsampled to this size (official: 192)
    seed: int = 0


def upsampled_ari_fg(true_mask, masks, size: int, background):
    """The official CLEVR convention: soft masks [B,K,1,h,w] resized (bicubic) to size x size before the
    argmax. Our stored ground truth is at image size, so it is nearest-upsampled to match (the official
    code compares with the 192 px crop's own masks, which we do not store)."""
    b, k, _, h, w = masks.shape
    pred = F.interpolate(masks.float().flatten(0, 1), size=(size, size), mode="bicubic", align_corners=False)
    true = F.interpolate(true_mask[:, None].float(), size=(size, size), mode="nearest")[:, 0]  # [B,S,S]
    return ari_fg(true.long(), pred.view(b, k, 1, size, size), background)


@torch.no_grad()
def run_model(model: EfficientMORL, data: dict, steps: int, cfg: EMORLEval, background) -> dict:
    """Per image for one test-time I: ARI-FG (masks of a posterior sample, as the official eval), MSE, the
    KL against the refinement prior (kl) and the loss's KL term (kl_objective); the posterior means (slots)."""
    torch.manual_seed(cfg.seed)
    keys = ("ari_fg", "mse", "kl", "kl_objective", "slots")
    out = {key: [] for key in keys + (("ari_fg_upsampled",) if cfg.ari_upsample else ())}
    d, device = model.config.slot_dim, device_of(model)
    for s in range(0, len(data["image"]), cfg.batch_size):
        images = to_float_images(data["image"][s:s + cfg.batch_size]).to(device)
        true = data["mask"][s:s + cfg.batch_size].to(device)
        its = model.infer(images, steps)
        m = its["log_masks"][-1].exp().detach()  # [B,K,1,H,W]
        means = its["lambda"][-1][..., :d].detach()  # [B,K,D]
        out["ari_fg"].append(ari_fg(true, m, background))
        out["mse"].append(mse(images, (m * its["rgb"][-1].detach()).sum(1)))
        out["kl"].append(its["kl_refinement"][-1].detach())
        out["kl_objective"].append(its["kl"][-1].detach())
        out["slots"].append(means)
        if cfg.ari_upsample:
            out["ari_fg_upsampled"].append(upsampled_ari_fg(true, m, cfg.ari_upsample, background))
    return {key: torch.cat(v).cpu() for key, v in out.items()}


@torch.no_grad()
def mean_masks(model: EfficientMORL, means, batch_size: int):
    """Masks decoded from the posterior means [N,K,D] -> [N,K,1,H,W] (DCI's matching, App. E.2)."""
    device = device_of(model)
    return torch.cat([model.decode(means[s:s + batch_size].to(device))[1].exp().cpu()
                      for s in range(0, len(means), batch_size)])


def summary(r: dict) -> dict:
    """Means over the evaluated images (one seed: its spread over images is not a spread over seeds)."""
    out = {"ari_fg": float(r["ari_fg"].mean()), "ari_fg_std_over_images": float(r["ari_fg"].std()),
           "mse": float(r["mse"].mean()), "kl": float(r["kl"].mean()), "kl_objective": float(r["kl_objective"].mean()),
           "n_images": int(len(r["ari_fg"]))}
    if "ari_fg_upsampled" in r:
        out["ari_fg_upsampled"] = float(r["ari_fg_upsampled"].mean())
    return out


def baseline_stage(stage: Stage) -> Stage:
    """The Slot Attention baseline trained on this stage's data (configs/<dataset>_slot_attention.yaml)."""
    return dataclasses.replace(stage, dataset=f"{stage.dataset}_slot_attention")


@torch.no_grad()
def baseline(stage: Stage, data, meta, cfg: EMORLEval) -> dict:
    """Table 3's Slot Attention column on the same scenes: its slots, masks, DCI and activeness."""
    base = baseline_stage(stage)
    if not (base.run_dir / "model").is_dir():
        return {"status": f"not trained: python -m papers.emorl.pipeline baseline --dataset {stage.dataset} "
                          f"--seed {stage.seed}"}
    run, model = load_run(base.run_dir)
    device = eval_device()
    model = model.to(device).eval()
    torch.manual_seed(cfg.seed)
    outs = [model(to_float_images(data["image"][s:s + cfg.batch_size]).to(device))
            for s in range(0, len(data["image"]), cfg.batch_size)]
    masks = torch.cat([o.masks.cpu() for o in outs])  # deterministic: its slots decode to these masks
    result = {"mean_masks": masks, "slots": torch.cat([o.slots.cpu() for o in outs])}
    ari = ari_fg(data["mask"], masks, meta.background_ids)
    record = {"model": "Slot Attention (common.models)", "steps": run.train.steps,
              "ari_fg": float(ari.mean())}
    return record | disentanglement(lambda z: model.decode(z.to(device))[0].cpu(), data, meta, result, cfg)


def disentanglement(decode, data, meta, result, cfg: EMORLEval) -> dict:
    """App. E.2 DCI on (posterior mean, object factors) pairs matched by the IoU of the masks decoded from
    the means (our reading of "we also decode the K masks"), once per estimator in cfg.dci_estimators
    (`dci`: the paper's, `dci_official`: the released code's); and activeness (§4.3) on the means."""
    out = {}
    specs = select_factors(meta.factors, cfg.dci_factors)  # in App. E.2's order: x (continuous) first
    if cfg.dci and specs:
        codes, factors, kinds, names = slot_factor_table(
            result["mean_masks"], result["slots"], data["mask"], data["visibility"],
            {s.name: data[f"factor.{s.name}"] for s in specs}, specs, meta.num_background)
        for estimator in cfg.dci_estimators if len(codes) >= 4 else ():
            d = dci(codes, factors, kinds, seed=cfg.seed, estimator=estimator)
            keep = ("disentanglement", "completeness", "informativeness", "informativeness_r2", "n_objects")
            out["dci" if estimator == "paper" else f"dci_{estimator}"] = {
                **{k: d[k] for k in keep}, "estimator": estimator,
                "factors": {n: {"score": v, "metric": m} for n, v, m in
                            zip(names, d["informativeness_per_factor"], d["score_metric_per_factor"])}}
    if cfg.activeness_images:
        latents = result["slots"][: cfg.activeness_images]
        act = activeness(decode, latents, steps=cfg.activeness_steps, seed=cfg.seed, batch=cfg.batch_size)
        out["activeness"] = {"per_dim": act.tolist(), "active_dims": int((act > 0.01 * act.max()).sum()),
                             "n_images": int(len(latents)), "steps": cfg.activeness_steps}
    return out


@torch.no_grad()
def figures(model: EfficientMORL, data: dict, out_dir: Path, steps: int, cfg: EMORLEval) -> None:
    """Fig. 5 decompositions, Fig. 6 intermediate posteriors, Fig. 9a traversals (model on any device)."""
    torch.manual_seed(cfg.seed)
    device = device_of(model)
    decode = lambda z: tuple(t.detach().cpu() for t in model.decode(z.to(device)))  # -> rgb, log masks on the CPU
    images = to_float_images(data["image"][:8])
    its = model.infer(images.to(device), steps)
    masks, rgb = its["log_masks"][-1].exp().detach().cpu(), its["rgb"][-1].detach().cpu()
    save_decomposition(out_dir / "decomposition.png", images, (masks * rgb).sum(1), masks, rgb)
    rows = []  # one image: each Stage-1 layer's sample, then each refinement iteration
    h, w = images.shape[2:]
    for z, attn in zip(its["samples"], its["attention"]):
        r, log_m = decode(z[:1])
        attn_seg = colour_masks(attn[:1].detach().cpu().transpose(1, 2).reshape(1, -1, 1, h, w))
        rows.append(torch.cat([images[:1], (log_m.exp() * r).sum(1), colour_masks(log_m.exp()), attn_seg]))
    for log_m, r in zip(its["log_masks"][1:], its["rgb"][1:]):
        log_m, r = log_m[:1].detach().cpu(), r[:1].detach().cpu()
        rows.append(torch.cat([images[:1], (log_m.exp() * r).sum(1), colour_masks(log_m.exp()), torch.ones_like(images[:1])]))
    save_png(grid(rows), out_dir / "intermediate_posteriors.png", scale=2)
    slots = its["lambda"][-1][:1, :, : model.config.slot_dim].detach().cpu()  # [1,K,D]
    k = int(masks[0, :, 0].sum((1, 2)).argmax())  # the slot with the largest mask
    rows = []
    for d in range(min(cfg.traversal_dims, model.config.slot_dim)):
        z = slots.repeat(7, 1, 1)
        z[:, k, d] = torch.linspace(-2, 2, 7)
        r, log_m = decode(z)
        rows.append((log_m.exp() * r).sum(1))
    save_png(grid(rows), out_dir / "traversals.png", scale=2)


def trained_stage(stage: Stage, cfg: EMORLEval) -> Stage:
    """The stage whose run is evaluated: this one, or `eval.run_of`'s (Fig. 7c: CLEVR10 uses CLEVR6's)."""
    return stage if cfg.run_of is None else dataclasses.replace(stage, dataset=cfg.run_of)


def evaluate(stage: Stage) -> Path:
    exp = stage.experiment()
    cfg = from_dict(EMORLEval, exp.eval, "eval")
    trained = trained_stage(stage, cfg)
    if not (trained.run_dir / "model").is_dir():
        raise ConfigError(f"no trained model in {trained.run_dir}: run `python -m papers.emorl.pipeline train "
                          f"--dataset {trained.dataset} --profile {stage.profile} --seed {stage.seed}` first")
    run, model = load_run(trained.run_dir)  # the run's own config: its steps and seed, whatever overrides say
    model = model.to(eval_device()).eval()
    trained_k = model.config.num_slots
    if cfg.num_slots is not None:  # K is not baked into the weights: z^0 is sampled per slot
        model.config = dataclasses.replace(model.config, num_slots=cfg.num_slots)
    path = data_path(stage)
    meta = load_meta(path)
    _, data = load_scenes(dataclasses.replace(exp.data, path=str(path)), exp.data.eval_split, exp.data.n_eval)
    test_steps = model.refinement_steps(None)
    sweep = {steps: run_model(model, data, steps, cfg, meta.background_ids)
             for steps in sorted(set(cfg.refinement_sweep) | {test_steps})}
    main = sweep[test_steps] | {"mean_masks": mean_masks(model, sweep[test_steps]["slots"], cfg.batch_size)}
    objects = data["num_objects"]
    record = {
        "paper": "emorl", "dataset": stage.dataset, "profile": stage.profile,
        "run": str(trained.run_dir.relative_to(output_root())), "trained_on": trained.dataset,
        "steps": run.train.steps, "seed": run.train.seed,
        "num_slots": model.config.num_slots, "trained_num_slots": trained_k, "test_refinement_steps": test_steps,
        "data_params": meta.params, "visible_objects_per_scene": [int(objects.min()), int(objects.max())],
        "metrics": summary(main), "refinement_sweep": {str(i): summary(r) for i, r in sweep.items()},
        "kl_definition": "kl: KL(q(z^{L,I}) || p) against the prior of Eq. 8's refinement term, the same "
                         "quantity at every I; kl_objective: the loss's KL term (the sum over the L layers "
                         "at I = 0, the refinement term at I >= 1), as the official evaluation reports it",
        **disentanglement(lambda z: model.decode_image(z.to(device_of(model))).cpu(), data, meta, main, cfg),
        **provenance(trained.run_dir),
    }
    if cfg.ari_upsample:
        record["ari_fg_upsampled_definition"] = (
            f"predicted soft masks bicubic-upsampled to {cfg.ari_upsample} px before the argmax (the official "
            f"CLEVR convention); ground truth: the dataset's {meta.image_size[0]} px masks nearest-upsampled")
    if cfg.baseline:
        record["baseline"] = baseline(stage, data, meta, cfg)
    if 0 in sweep and 1 in sweep:
        record["ari_ratio_i0_over_i1"] = float(sweep[0]["ari_fg"].mean() / sweep[1]["ari_fg"].mean())
    stage.seed_dir.mkdir(parents=True, exist_ok=True)
    figures(model, data, stage.seed_dir, test_steps, cfg)
    out = stage.seed_dir / "metrics.json"
    out.write_text(json.dumps(record, indent=2))
    return out
