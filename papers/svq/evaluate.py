"""SVQ evaluation (`../shared/seeds/svq.txt` §5.1, App. A.1-A.2) of one seed: FID of samples from the semantic prior
(SVQ) and from the token prior over the same dVAE (the dVAE baseline), and of GENESIS-v2 where the config has it
(Tables 2-3); generation accuracy by the learned judge on 2D Sprites with its 95 % interval and the judge's own
accuracy (Table 2; the paper labelled 128 samples by hand); reconstructions and attention (App. A.2 Fig. 9), the
latent traversal (Fig. 6) and the block analysis (Figs. 7-8); codebook health over training and on test scenes.
Writes reports/svq/<config>-<profile>/seeds/seed<k>/metrics.json and the figures.

Samples are drawn once per model as uint8 images (rounded, as the official PNG dump) and read by both FID and
the judge. FID: N samples against the first N test scenes of the scenes the prior models (App. B.1: the
odd-one-out scenes for 2D Sprites); the paper does not give N (the official dump writes 1,000 images).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from common.config import ConfigError, from_dict
from common.evaluate import device_of, eval_device, evaluate as segmentation, load_run
from common.metrics.generative import evaluate_samples, quantise
from common.metrics.judges.score import score
from common.pipeline import ROOT, Stage, data_path
from common.profile_judge import profile_judge
from common.provenance import provenance, training_record
from common.train.experiment import DataConfig, load_scenes
from common.train.logs import TSVLog
from common.train.loop import to_float_images
from common.viz import grid, save_decomposition, save_png, save_samples
from papers.svq.quantiser import perplexity, usage

CONFIGS = ROOT / "papers" / "svq" / "configs"
# kind -> (run name suffix, config): the semantic prior on SVQ's codes, the dVAE baseline's token prior on its dVAE's
# tokens, the VQ-VAE baseline's PixelCNN on the VQ-VAE's code grid
PRIORS = {"svq": ("prior", CONFIGS / "prior.yaml"), "dvae": ("dvae", CONFIGS / "prior.yaml"),
          "vqvae": ("pixelcnn", CONFIGS / "pixelcnn.yaml")}
GENESIS_CONFIGS = ROOT / "common" / "models" / "configs" / "genesis_v2"


@dataclass
class SVQEval:
    prior_scenes: dict = field(default_factory=dict)  # data.params of the scenes the priors model (App. B.1)
    generative: bool = True  # priors, FID and generation accuracy (False: App. A.2's M = 1 runs)
    genesis: bool = False  # Table 3's GENESIS-v2 column (its run: the pipeline's `genesis` stage)
    downstream: dict = field(default_factory=dict)  # Tables 4-5: papers.svq.downstream.DownstreamConfig fields
    n_samples: int = 10_000  # FID: samples and real test scenes
    accuracy_n: int = 1_000  # generation accuracy by the judge over this many samples, and over the paper's 128
    accuracy_paper_n: int = 128
    temperature: float = 1.0  # the official sampling defaults: T = 1, no top-k (checked 7.1)
    top_k: int | None = None
    quantisation: str = "round"  # torchvision's save_image rounds (checked 7.1)
    ari_n: int = 320  # ARI-FG of the slots' attention (not in the paper)
    analysis_n: int = 1_000  # App. A.1: test scenes for the block analysis
    traversal_codes: int = 16  # App. A.1 Fig. 6: prototypes per block
    traversal_slots: int = 2
    batch_size: int = 100
    seed: int = 0


def svq_eval(stage: Stage) -> SVQEval:
    return from_dict(SVQEval, stage.experiment().eval, "eval")


# -- the runs beside SVQ's ------------------------------------------------------------------------------------
def scenes_stage(stage: Stage) -> Stage:
    """Where the scenes the priors model live: App. B.1's odd-one-out scenes for 2D Sprites (`eval.prior_scenes`,
    data `<config>_scenes`), else SVQ's own training scenes."""
    scenes = svq_eval(stage).prior_scenes
    if not scenes:
        return stage
    overrides = tuple(f"data.params.{k}={v}" for k, v in scenes.items())
    return dataclasses.replace(stage, dataset=f"{stage.dataset}_scenes", config_file=stage.config_path,
                               overrides=stage.overrides + overrides)


def prior_stage(stage: Stage, kind: str) -> Stage:
    """The run of a prior (PRIORS): over SVQ's codes (kind "svq": `<config>_prior`), over its dVAE's tokens (kind
    "dvae", the dVAE baseline: `<config>_dvae`), or over the VQ-VAE's code grid (kind "vqvae": `<config>_pixelcnn`)."""
    name, config = PRIORS[kind]
    return dataclasses.replace(stage, dataset=f"{stage.dataset}_{name}", config_file=config, overrides=())


def vqvae_stage(stage: Stage) -> Stage:
    """The VQ-VAE baseline (`<config>_vqvae`, papers/svq/configs/vqvae.yaml) on SVQ's training scenes at its size."""
    size = stage.experiment().model_config.get("resolution", [64, 64])
    return dataclasses.replace(stage, dataset=f"{stage.dataset}_vqvae", config_file=CONFIGS / "vqvae.yaml",
                               overrides=(f"model_config.resolution=[{size[0]},{size[1]}]",))


def genesis_stage(stage: Stage) -> Stage:
    """Table 3's GENESIS-v2 on this config's scenes (`<config>_genv2`) from the shared config of its dataset, at
    SVQ's resolution."""
    data = stage.experiment().data
    size = data.params.get("size", 128)
    return dataclasses.replace(stage, dataset=f"{stage.dataset}_genv2",
                               config_file=GENESIS_CONFIGS / f"{data.name}_mog.yaml",
                               overrides=(f"model_config.resolution=[{size},{size}]",))


def sysbinder_stage(stage: Stage) -> Stage:
    """SysBinder (SVQ without quantisation, trained with its own objective) on this config's scenes: the config
    `<config>_sysbinder` (Tables 4-5)."""
    return dataclasses.replace(stage, dataset=f"{stage.dataset}_sysbinder", config_file=None)


def downstream_stage(stage: Stage) -> Stage:
    """Where Tables 4-5's downstream results of this pretraining config go: `<config>_downstream`."""
    return dataclasses.replace(stage, dataset=f"{stage.dataset}_downstream")


def prepared(stage: Stage) -> DataConfig:
    """The stage's data config reading its prepared folder (the pipeline's prepare/scenes stages)."""
    return dataclasses.replace(stage.experiment().data, path=str(data_path(stage)))


def runs_beside(stage: Stage) -> dict[str, Path]:
    """The runs an evaluation reads beside SVQ's, by the config: the three priors and GENESIS-v2 (the VQ-VAE itself
    is `vqvae_stage`'s)."""
    cfg = svq_eval(stage)
    runs = {k: prior_stage(stage, k).run_dir for k in PRIORS} if cfg.generative else {}
    return runs | ({"genesis": genesis_stage(stage).run_dir} if cfg.genesis else {})


# -- sampling ---------------------------------------------------------------------------------------------
@torch.no_grad()
def svq_samples(svq, prior, n: int, cfg: SVQEval, generator: torch.Generator) -> torch.Tensor:
    """n scenes from the semantic prior -> codes -> SVQ's decoder -> dVAE decoder: uint8 [n,3,H,W]."""
    parts = []
    for i in range(0, n, cfg.batch_size):
        codes = prior.sample(min(cfg.batch_size, n - i), cfg.temperature, cfg.top_k, generator)  # [b,N,M]
        parts.append(quantise(svq.decode(svq.slots_from_indices(codes)).cpu(), cfg.quantisation))
    return torch.cat(parts)


@torch.no_grad()
def dvae_samples(svq, token_prior, n: int, cfg: SVQEval, generator: torch.Generator) -> torch.Tensor:
    """The dVAE baseline (§5 "Baselines"): tokens from the transformer prior over SVQ's own dVAE, then its decoder."""
    h, w = (r // 4 for r in svq.config.resolution)
    parts = []
    for i in range(0, n, cfg.batch_size):
        tokens = token_prior.sample(min(cfg.batch_size, n - i), cfg.temperature, cfg.top_k, generator)  # [b,L,1]
        parts.append(quantise(svq.dvae.decode_tokens(tokens.view(-1, h, w)).cpu(), cfg.quantisation))
    return torch.cat(parts)


@torch.no_grad()
def vqvae_samples(vqvae, pixelcnn, n: int, cfg: SVQEval, generator: torch.Generator) -> torch.Tensor:
    """The VQ-VAE baseline: code grids from the gated PixelCNN, then the VQ-VAE's decoder."""
    parts = [quantise(vqvae.decode_indices(pixelcnn.sample(min(cfg.batch_size, n - i), cfg.temperature, cfg.top_k,
                                                           generator)).cpu(), cfg.quantisation)
             for i in range(0, n, cfg.batch_size)]
    return torch.cat(parts)


@torch.no_grad()
def genesis_samples(model, n: int, cfg: SVQEval, generator: torch.Generator) -> torch.Tensor:
    parts = [quantise(model.sample(min(cfg.batch_size, n - i), cfg.temperature, generator=generator)["images"].cpu(),
                      cfg.quantisation) for i in range(0, n, cfg.batch_size)]
    return torch.cat(parts)


def generative_metrics(samples: torch.Tensor, real: torch.Tensor, key: str, cfg: SVQEval, judge: Path | None) -> dict:
    """FID/KID of uint8 samples [n,3,H,W] against real uint8 [n,3,H,W]; generation accuracy by `judge`."""
    chunks = iter(samples.split(cfg.batch_size))
    out = {"fid": evaluate_samples(real, lambda b: next(chunks).float() / 255, cfg.n_samples, key=key,
                                   temperature=cfg.temperature, quantisation=cfg.quantisation,
                                   batch_size=cfg.batch_size)}
    if judge is not None:
        x = samples[:cfg.accuracy_n].float() / 255
        if (judge / "config.json").is_file():
            out["generation_accuracy"] = {**score(judge, x), "paper_count": score(judge, x, cfg.accuracy_paper_n)}
        else:
            out["generation_accuracy"] = {"status": f"no judge in {judge}: python -m common.profile_judge "
                                                    f"--task generation_accuracy --profile <profile>"}
    return out


# -- App. A.1 / A.2 analyses ---------------------------------------------------------------------------------
@torch.no_grad()
def encode_all(svq, images: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
    """uint8 images [n,H,W,3] -> code indices [n,N,M] and masks [n,N,1,H,W] (CPU)."""
    device, idx, masks = device_of(svq), [], []
    for batch in images.split(batch_size):
        e = svq.encode(to_float_images(batch).to(device))
        idx.append(e["indices"].cpu())
        masks.append(svq.masks(e["attn"]).cpu())
    return {"indices": torch.cat(idx), "masks": torch.cat(masks)}


def code_usage(indices: torch.Tensor, size: int) -> dict:
    """Per block: how many codes the slots of these scenes use, and the perplexity of that usage.
    indices [n,N,M] -> {"used": [M], "perplexity": [M]}."""
    p = usage(indices, size)  # [M,K]
    return {"used": (p > 0).sum(-1).tolist(), "perplexity": perplexity(p).tolist()}


def most_used(indices: torch.Tensor, block: int, size: int, k: int) -> torch.Tensor:
    """The k codes of `block` most used by the slots of these scenes (ties by index): [k]."""
    counts = torch.bincount(indices[..., block].flatten(), minlength=size)  # [K]
    return counts.argsort(descending=True, stable=True)[:k]


@torch.no_grad()
def traversal(svq, image: torch.Tensor, codes: dict[int, torch.Tensor], slots: int) -> list[torch.Tensor]:
    """App. A.1 Fig. 6: one test image's codes; for each of the first `slots` slots and each block m, the image
    decoded with that block replaced by each code of codes[m] (the same codes for every slot), all other
    latents fixed. image uint8 [H,W,3] -> rows [C,3,H,W], one per (slot, block)."""
    device = device_of(svq)
    base = svq.encode(to_float_images(image[None]).to(device))["indices"]  # [1,N,M]
    rows = []
    for n in range(min(slots, base.shape[1])):
        for m, chosen in codes.items():
            idx = base.repeat(len(chosen), 1, 1)  # [C,N,M]
            idx[:, n, m] = chosen.to(device)
            rows.append(svq.decode(svq.slots_from_indices(idx)).cpu())
    return rows


def block_analysis(images: torch.Tensor, masks: torch.Tensor, indices: torch.Tensor, block: int, codes: torch.Tensor,
                   per_code: int = 8) -> list[torch.Tensor]:
    """App. A.1 Figs. 7-8: for each code of `codes`, up to `per_code` slots (in scene order) whose block `block`
    holds it, shown as image x that slot's attention mask. images uint8 [n,H,W,3], masks [n,N,1,H,W],
    indices [n,N,M] -> one row [per_code,3,H,W] per code (white where fewer slots use it)."""
    x = to_float_images(images)  # [n,3,H,W]
    rows = []
    for k in codes.tolist():
        scene, slot = (indices[..., block] == k).nonzero(as_tuple=True)
        row = torch.ones(per_code, *x.shape[1:])
        for j, (s, n) in enumerate(zip(scene[:per_code].tolist(), slot[:per_code].tolist())):
            row[j] = x[s] * masks[s, n] + (1 - masks[s, n])  # the object on white
        rows.append(row)
    return rows


def health_figure(run: Path, out: Path) -> Path | None:
    """Codebook health over training (logs/train.tsv): each block's perplexity and dead-code count."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = TSVLog(run / "logs" / "train.tsv").rows()
    if not rows:
        return None
    steps = [float(r["step"]) for r in rows]
    blocks = sorted(int(k.split("_")[1]) for k in rows[0] if k.startswith("perplexity_") and k[11:].isdigit())
    if not blocks:  # SysBinder: no codebooks
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for m in blocks:
        axes[0].plot(steps, [float(r[f"perplexity_{m}"]) for r in rows], label=f"block {m}")
        axes[1].plot(steps, [float(r[f"dead_{m}"]) for r in rows], label=f"block {m}")
    axes[0].set(xlabel="step", ylabel="perplexity of code usage (batch)")
    axes[1].set(xlabel="step", ylabel="dead codes")
    axes[0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    path = out / "codebook_health.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# -- the stage -----------------------------------------------------------------------------------------------
def load_model(run: Path):
    return load_run(run)[1].to(eval_device()).eval()


def evaluate(stage: Stage) -> Path:
    """The evaluation of this stage's SVQ run, and of the runs beside it (`runs_beside`), into its seed folder."""
    exp, cfg = stage.experiment(), svq_eval(stage)
    out = stage.seed_dir
    out.mkdir(parents=True, exist_ok=True)
    svq = load_model(stage.run_dir)
    generator = torch.Generator(device=device_of(svq)).manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # slot initialisation noise
    meta, test = load_scenes(prepared(stage), exp.data.eval_split, max(cfg.ari_n, cfg.analysis_n))
    seg, (images, first) = segmentation(svq, {k: v[:cfg.ari_n] for k, v in test.items()}, meta.background_ids)
    figures = {"reconstruction": save_decomposition(out / "reconstruction.png", images[:8], first.recon[:8].cpu(),
                                                    first.masks[:8].cpu()).name}
    through = svq.reconstruct(images[:8].to(device_of(svq))).cpu()  # App. A.1: slots -> tokens -> image
    figures["transformer_reconstruction"] = save_png(grid([images[:8], through]), out / "transformer_reconstruction.png",
                                                     scale=2).name
    metrics = {"ari_fg_attention": seg["ari_fg"], "mse_dvae": seg["mse"], "n_ari": seg["n_images"],
               "mse_transformer": float(((through - images[:8]) ** 2).mean())}
    if svq.codebooks is not None:
        codes = encode_all(svq, test["image"][:cfg.analysis_n], cfg.batch_size)
        metrics["codebook_test"] = code_usage(codes["indices"], svq.config.codebook_size) | {
            "dead_after_training": (svq.codebooks.cluster_size < svq.codebooks.threshold).sum(-1).tolist()}
        k = min(cfg.traversal_codes, svq.config.codebook_size)
        chosen = {m: most_used(codes["indices"], m, svq.config.codebook_size, k) for m in range(svq.config.blocks)}
        scale = 2 if svq.config.resolution[0] <= 64 else 1  # 128 px CLEVR: up to 32 rows of 16 already
        figures["traversal"] = save_png(grid(traversal(svq, test["image"][0], chosen, cfg.traversal_slots)),
                                        out / "traversal.png", scale=scale).name
        rows = [r for m in range(svq.config.blocks)
                for r in block_analysis(test["image"][:cfg.analysis_n], codes["masks"], codes["indices"], m,
                                        most_used(codes["indices"], m, svq.config.codebook_size, 3))]
        figures["blocks"] = save_png(grid(rows), out / "blocks.png", scale=scale).name
    health = health_figure(stage.run_dir, out)
    if health is not None:
        figures["codebook_health"] = health.name
    beside = runs_beside(stage)
    if cfg.generative:
        metrics.update(generative(stage, svq, cfg, beside, generator, out, figures))
    record = {"metrics": metrics, "figures": figures, "model": exp.model, "profile": stage.profile,
              "steps": exp.train.steps, "seed": stage.seed, "eval": vars(cfg),
              "dataset": exp.data.path or exp.data.name, **provenance(stage.run_dir)}
    with_training_of(record, beside | ({"vqvae": vqvae_stage(stage).run_dir} if cfg.generative else {}))
    (out / "metrics.json").write_text(json.dumps(record, indent=2))
    return out / "metrics.json"


def with_training_of(record: dict, runs: dict[str, Path]) -> None:
    """Add to record["training"] (SVQ's own segments) those of the other runs its metrics read, each labelled
    with the run's name."""
    record["training"] = record.get("training", []) + [
        dict(s, run=name) for name, folder in runs.items() for s in training_record(folder / "model") or []]


def evaluate_downstream(stage: Stage) -> Path:
    """Tables 4-5: the downstream task of `eval.downstream` on the frozen SVQ, VQ-VAE and SysBinder of this config
    (papers/svq/downstream.py), into `<config>_downstream`'s seed folder with the learning curves."""
    from papers.svq.downstream import DownstreamConfig, curves_figure, run
    exp, cfg = stage.experiment(), svq_eval(stage)
    if not cfg.downstream:
        raise ConfigError(f"{stage.dataset} has no downstream task (eval.downstream; Tables 4-5: sprites_quadrant, "
                          f"clevr_hard)")
    c = from_dict(DownstreamConfig, cfg.downstream, "eval.downstream")
    runs = {"vqvae": vqvae_stage(stage).run_dir, "sysbinder": sysbinder_stage(stage).run_dir}
    models = {"svq": load_model(stage.run_dir), **{name: load_model(folder) for name, folder in runs.items()}}
    record = run(c, models, exp.data, prepared(stage), eval_device())
    out = downstream_stage(stage).seed_dir
    out.mkdir(parents=True, exist_ok=True)
    curves_figure(record["results"], out / "learning_curves.png", c.target)
    metrics = {"metrics": {"downstream": record["results"]}, "split": record["split"], "task": c.task,
               "figures": {"learning_curves": "learning_curves.png"}, "downstream_config": vars(c),
               "model": exp.model, "profile": stage.profile, "steps": exp.train.steps, "seed": stage.seed,
               "dataset": exp.data.path or exp.data.name, **provenance(stage.run_dir)}
    with_training_of(metrics, runs)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return out / "metrics.json"


def generative(stage: Stage, svq, cfg: SVQEval, priors: dict[str, Path], generator: torch.Generator, out: Path,
               figures: dict) -> dict:
    """Tables 2-3: FID (and generation accuracy on 2D Sprites) of SVQ, the dVAE and VQ-VAE baselines and GENESIS-v2
    (`priors`: their runs)."""
    scenes = prepared(scenes_stage(stage))
    _, test = load_scenes(scenes, scenes.eval_split, cfg.n_samples)
    real = test["image"].permute(0, 3, 1, 2)  # uint8 [n,3,H,W]
    key = f"{scenes.path or scenes.name}|{scenes.params}|{scenes.seed}|{scenes.eval_split}"
    judge = profile_judge(stage.profile, "generation_accuracy") if scenes.name == "sprites" else None
    draws = {"svq": lambda: svq_samples(svq, load_model(priors["svq"]), cfg.n_samples, cfg, generator),
             "dvae": lambda: dvae_samples(svq, load_model(priors["dvae"]), cfg.n_samples, cfg, generator),
             "vqvae": lambda: vqvae_samples(load_model(vqvae_stage(stage).run_dir), load_model(priors["vqvae"]),
                                            cfg.n_samples, cfg, generator),
             "genesis": lambda: genesis_samples(load_model(priors["genesis"]), cfg.n_samples, cfg, generator)}
    results = {}
    for name, draw in draws.items():
        if name not in priors:
            continue
        samples = draw()  # uint8 [n,3,H,W]
        results[name] = generative_metrics(samples, real, key, cfg, judge if name != "genesis" else None)
        figures[f"samples_{name}"] = save_samples(out / f"samples_{name}.png", samples[:16].float() / 255).name
    return {"generative": results, "n_samples": cfg.n_samples, "temperature": cfg.temperature, "top_k": cfg.top_k}
