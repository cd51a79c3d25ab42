"""IODINE evaluation (§4). Writes reports/iodine/<dataset>-<profile>/seeds/seed<k>/metrics.json and figures/:

- ARI-FG (background excluded), MSE and KL of the posterior after t = 0..`iterations` refinement
  updates (mean, median and quartiles over images; row t has "iteration": t, t = 0 is the initial
  posterior, the headline is the row t = the training T), for the main model and for the models the
  `sweep` stage trained with T = 1, 2, 4, 6 (Fig. 8: all evaluated up to 15 updates; iterations.png);
- the linear factor probe on slots matched to objects (§4.1, Fig. 5);
- more slots at test time on more objects than in training (Fig. 9: K = 11 on 7-9 objects, scenes
  the `prepare` stage made: papers/iodine/data.py);
- the multi-stability runs on an ambiguous Tetrominoes arrangement (§4.3, Fig. 10; multistability.png).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from common.config import ConfigError, from_dict
from common.data import load_meta
from common.evaluate import device_of, eval_device, load_run
from common.metrics import ari_fg, linear_probe, mse
from common.metrics.dci import slot_factor_table
from common.pipeline import Stage, data_path, output_root, train
from common.provenance import provenance
from common.train.experiment import load_scenes
from common.train.loop import to_float_images
from common.viz import save_decomposition
from papers.iodine.data import Generalisation, load_generalisation
from papers.iodine.model import IODINE
from papers.iodine.multistability import multistability

METRICS = ("ari_fg", "mse", "kl")


@dataclass
class IODINEEval:
    iterations: int = 15  # test-time refinement updates (Fig. 8); at least the training T
    num_slots: int | None = None  # K at test time on the evaluation split
    batch_size: int = 16
    probe: bool = True  # Fig. 5
    sweep_iterations: tuple[int, ...] = (1, 2, 4, 6)  # Fig. 8: training T of the `sweep` stage's models
    generalisation: Generalisation | None = None  # Fig. 9
    multistability_runs: int = 0  # Fig. 10 (Tetrominoes only)
    seed: int = 0


def with_slots(model: IODINE, k: int | None) -> IODINE:
    """The initial posterior is shared by all slots, so K is free at test time (§4.2)."""
    if k is not None:
        model.config = dataclasses.replace(model.config, num_slots=k)
    return model


def run_iterations(model: IODINE, data: dict, iterations: int, batch_size: int, background, seed: int) -> dict:
    """Per image after t = 0..iterations refinement updates: ARI-FG, MSE, KL [iterations+1,N]; and the
    masks and posterior means [N,K,...] after the training T updates, for the probe."""
    model.eval()  # detached outputs, memory flat over the iterations
    device = device_of(model)
    torch.manual_seed(seed)
    t_train = min(model.config.iterations, iterations)
    out = {key: [] for key in (*METRICS, "masks", "slots")}
    for s in range(0, len(data["image"]), batch_size):
        images = to_float_images(data["image"][s:s + batch_size]).to(device)
        its = model.infer(images, iterations)
        true = data["mask"][s:s + batch_size].to(device)
        out["ari_fg"].append(torch.stack([ari_fg(true, m, background) for m in its["masks"]]))
        out["mse"].append(torch.stack([mse(images, (m * mu).sum(1)) for m, mu in zip(its["masks"], its["means"])]))
        out["kl"].append(torch.stack(its["kl"]))
        out["masks"].append(its["masks"][t_train])
        out["slots"].append(its["lambda"][t_train][..., : model.config.latent_dim])
    return {key: torch.cat(v, 1 if key in METRICS else 0).cpu() for key, v in out.items()}


def summarise(per_image: dict) -> list[dict]:
    """[T+1,N] per metric -> a row per number of refinement updates t = 0..T ("iteration": t): mean,
    median and the 25th/75th percentiles (Fig. 8's band)."""
    rows = []
    for t in range(len(per_image["ari_fg"])):
        row = {"iteration": t}
        for key in METRICS:
            v = per_image[key][t].double()
            q = torch.quantile(v, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)).tolist()
            row |= {key: float(v.mean()), f"{key}_median": q[1], f"{key}_p25": q[0], f"{key}_p75": q[2]}
        rows.append(row)
    return rows


def probe(result: dict, data: dict, meta, seed: int) -> dict:
    """Fig. 5: a linear layer per factor from matched slot latents (posterior means at the training T)."""
    specs = list(meta.factors)
    codes, factors, kinds, names = slot_factor_table(
        result["masks"], result["slots"], data["mask"], data["visibility"],
        {s.name: data[f"factor.{s.name}"] for s in specs}, specs, meta.num_background)
    if len(codes) < 4:
        return {"status": f"{len(codes)} slot-object matches (IoU >= 0.1); the probe needs at least 4"}
    return {"n_objects": len(codes), "factors": linear_probe(codes, factors, kinds, names, seed=seed)}


def sweep_dir(stage: Stage) -> Path:
    """runs/iodine/<dataset>-<profile>-sweep/seed<k>: this seed's T<t> models."""
    return output_root() / "runs" / stage.paper / f"{stage.name}-sweep" / f"seed{stage.seed}"


def sweep(stage: Stage) -> Path:
    """Fig. 8: train one model per T in eval.sweep_iterations on this stage's data, into sweep_dir/T<T>."""
    cfg = from_dict(IODINEEval, stage.experiment().eval, "eval")
    for t in cfg.sweep_iterations:
        variant = dataclasses.replace(stage, overrides=(*stage.overrides, f"model_config.iterations={t}"))
        train(variant, data=stage, run_dir=sweep_dir(stage) / f"T{t}")
    return sweep_dir(stage)


def evaluate_sweep(stage: Stage, data: dict, meta, cfg: IODINEEval) -> dict:
    """Each swept model evaluated up to cfg.iterations (the region past its T is test-time generalisation)."""
    out = {}
    for t in cfg.sweep_iterations:
        path = sweep_dir(stage) / f"T{t}" / "model"
        if not path.is_dir():
            return {"status": f"not trained: python -m papers.iodine.pipeline sweep --dataset {stage.dataset} "
                              f"--profile {stage.profile} --seed {stage.seed}"}
        model = with_slots(IODINE.from_pretrained(path).to(eval_device()), cfg.num_slots)
        r = run_iterations(model, data, cfg.iterations, cfg.batch_size, meta.background_ids, cfg.seed)
        out[f"T{t}"] = {"train_iterations": t, "per_iteration": summarise(r)}
    return out


def generalisation(model: IODINE, scenes: dict, background, cfg: IODINEEval) -> dict:
    """Fig. 9: K = cfg.generalisation.num_slots on the prepared scenes with more objects, after the
    training T updates."""
    g, data = cfg.generalisation, scenes["data"]
    trained_k = model.config.num_slots
    r = run_iterations(with_slots(model, g.num_slots), data, model.config.iterations, cfg.batch_size,
                       background, cfg.seed)
    with_slots(model, trained_k)
    objects = data["num_objects"]
    return {"num_slots": g.num_slots, "path": scenes["path"], "split": scenes["split"], "n_images": len(objects),
            "objects": [int(objects.min()), int(objects.max())], **summarise(r)[-1]}


def iteration_figure(path: Path, curves: dict[str, tuple[int, list[dict]]]) -> Path:
    """Fig. 8: median ARI-FG, MSE and KL over the number of refinement updates t (0: the initial
    posterior), one curve per training T, the 25-75th percentile band shaded and a dot at t = T."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for label, (t_train, rows) in curves.items():
        ts = [r["iteration"] for r in rows]
        for ax, key in zip(axes, METRICS):
            line, = ax.plot(ts, [r[f"{key}_median"] for r in rows], label=label)
            ax.fill_between(ts, [r[f"{key}_p25"] for r in rows], [r[f"{key}_p75"] for r in rows],
                            color=line.get_color(), alpha=0.2)
            if t_train < len(rows):
                ax.plot([t_train], [rows[t_train][f"{key}_median"]], "o", color=line.get_color())
    for ax, title in zip(axes, ("ARI-FG (median)", "MSE (median)", "KL (median, nats)")):
        ax.set_title(title), ax.set_xlabel("refinement updates t (0: initial posterior)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def evaluate(stage: Stage) -> Path:
    exp = stage.experiment()
    cfg = from_dict(IODINEEval, exp.eval, "eval")
    if not (stage.run_dir / "model").is_dir():
        raise ConfigError(f"no trained model in {stage.run_dir}: run `python -m papers.iodine.pipeline train "
                          f"--dataset {stage.dataset} --profile {stage.profile} --seed {stage.seed}` first")
    run, model = load_run(stage.run_dir)  # the run's own config: its steps and seed, whatever overrides say
    model = with_slots(model.to(eval_device()).eval(), cfg.num_slots)
    t_train = model.config.iterations
    if cfg.iterations < t_train:
        raise ConfigError(f"eval.iterations = {cfg.iterations} is less than the training T = {t_train}: the "
                          f"headline metrics are those after T refinement updates")
    scenes = load_generalisation(stage, cfg.generalisation, model.config.resolution) if cfg.generalisation else None
    path = data_path(stage)
    meta = load_meta(path)
    _, data = load_scenes(dataclasses.replace(exp.data, path=str(path)), exp.data.eval_split, exp.data.n_eval)
    result = run_iterations(model, data, cfg.iterations, cfg.batch_size, meta.background_ids, cfg.seed)
    rows = summarise(result)
    record = {"paper": "iodine", "dataset": stage.dataset, "profile": stage.profile, "steps": run.train.steps,
              "seed": run.train.seed, "run": str(stage.run_dir.relative_to(output_root())),
              "num_slots": model.config.num_slots, "train_iterations": t_train,
              "model_config": dataclasses.asdict(model.config),
              "train": {"lr": run.train.lr, "betas": list(run.train.betas), "clip_value": run.train.clip_value,
                        "batch_size": run.train.batch_size},
              "metrics": {**rows[t_train], "n_images": len(data["image"])},  # after the training T updates
              "per_iteration": rows}
    figures = stage.seed_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    if cfg.probe and meta.factors:
        record["probe"] = probe(result, data, meta, cfg.seed)
    record["sweep"] = evaluate_sweep(stage, data, meta, cfg) if cfg.sweep_iterations else {"status": "not configured"}
    curves = {f"trained T={t_train}": (t_train, rows)}
    curves |= {f"trained T={v['train_iterations']}": (v["train_iterations"], v["per_iteration"])
               for v in record["sweep"].values() if isinstance(v, dict)}
    iteration_figure(figures / "iterations.png", dict(sorted(curves.items(), key=lambda c: c[1][0])))
    if cfg.generalisation is not None:
        record["generalisation"] = generalisation(model, scenes, meta.background_ids, cfg)
    if cfg.multistability_runs:
        record["multistability"] = multistability(model, cfg.multistability_runs, cfg.seed,
                                                  figures / "multistability.png")
    torch.manual_seed(cfg.seed)
    images = to_float_images(data["image"][:8])
    its = model.infer(images.to(eval_device()), t_train)
    masks, means = its["masks"][-1].cpu(), its["means"][-1].cpu()
    save_decomposition(figures / "decomposition.png", images, (masks * means).sum(1), masks, means)
    out = stage.seed_dir / "metrics.json"
    out.write_text(json.dumps(record | provenance(stage.run_dir), indent=2))
    return out
