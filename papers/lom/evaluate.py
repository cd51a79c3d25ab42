"""LOM evaluation (§4, App. A.4-A.7) of one run: the shared generative evaluation (`common.evaluate_generative`:
FID/KID on N samples at tau = 0.8 against N test scenes, -ELBO in bits/dim, ARI-FG on 320 test scenes), the test
KL (Fig. 6a), FID at each temperature (Fig. 7), S-Acc on ShapeStacks by the learned judge
(`common.profile_judge`), DCI on CLEVR6 with EMORL's Table 3 code and factors (Table 3), how consistent the
generation order is, and the figures of Figs. 3d, 4, 7 (samples per temperature) and 8-9 (retrieval, App. A.6).
Writes reports/lom/<config>-<profile>/seeds/seed<k>/metrics.json.
"""
from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

from common.config import from_dict
from common.evaluate import device_of, eval_device, load_run
from common.evaluate_generative import draw, s_acc
from common.evaluate_generative import run as generative_evaluation
from common.metrics import dci
from common.metrics.dci import select_factors, slot_factor_table
from common.metrics.generative import evaluate_samples, generation_order
from common.pipeline import Stage
from common.profile_judge import s_acc_judge
from common.train.experiment import load_scenes
from common.train.loop import to_float_images
from common.viz import colour_masks, grid, save_png
from papers.lom.model import slerp
from papers.lom.retrieval import retrieval_figure

CLEVR_FACTORS = ("x", "y", "z", "rotation", "size", "material", "shape", "colour")  # EMORL App. E.2 (Table 3)


@dataclass
class LOMEval:
    n_samples: int = 10_000  # FID: 10K real and 10K generated (§4, after Engelcke et al. 2021)
    bpd_n: int = 5_000  # -ELBO in bits/dim (not in the paper), and Fig. 6a's test KL on as many test scenes
    ari_n: int = 320
    s_acc_n: int = 1_000  # S-Acc over this many samples, and over the paper's 100 (§4)
    s_acc_paper_n: int = 100
    order_n: int = 256  # samples for the generation-order measure
    temperature: float = 0.8  # tau for every LOM result (§4.1, Fig. 7)
    temperatures: tuple[float, ...] = (0.6, 0.7, 0.8, 0.9, 1.0)  # Fig. 7's range, as sample rows
    fid_temperatures: tuple[float, ...] = ()  # Fig. 7: FID over n_samples at each (Objects Room: 0.6-1.0)
    retrieval: bool = False  # App. A.6's figure (needs a scene latent)
    retrieval_n: int = 50_000  # its database of training scenes (App. A.6: 50K)
    retrieval_queries: int = 4  # held-out queries, one figure row pair each
    interpolation_steps: int = 8  # Fig. 4: slerp between two prior samples
    dci: bool = False  # Table 3 (CLEVR6)
    dci_estimators: tuple[str, ...] = ("paper", "official")  # as EMORL's Table 3 on CLEVR6 (papers/emorl/README.md)
    dci_n: int = 320
    quantisation: str = "truncate"  # GENESIS-v2's compute_fid, whose 10K-vs-10K protocol LOM follows (README)
    batch_size: int = 100
    seed: int = 0


@torch.no_grad()
def table3(model, exp, cfg: LOMEval) -> dict:
    """DCI of the ordered posterior means against the object factors, slots and objects paired by the IoU of the
    masks LOM's decoder draws from the means (EMORL App. E.2's protocol), once per estimator in
    cfg.dci_estimators, as EMORL's Table 3: {"dci": the paper's, "dci_official": the released code's}."""
    meta, test = load_scenes(exp.data, exp.data.eval_split, cfg.dci_n)
    specs = select_factors(meta.factors, CLEVR_FACTORS)  # in App. E.2's order: x (continuous) first
    x = to_float_images(test["image"]).to(device_of(model))
    means = torch.cat([model.infer(b)["q_z"].mean for b in x.split(cfg.batch_size)])  # [N,K,D]
    masks = torch.cat([model.decode(m)[1].exp().cpu() for m in means.split(cfg.batch_size)])  # [N,K,1,H,W]
    codes, factors, kinds, names = slot_factor_table(masks, means.cpu(), test["mask"], test["visibility"],
                                                     {s.name: test[f"factor.{s.name}"] for s in specs}, specs,
                                                     meta.num_background)
    if len(codes) < 4:  # an untrained model's masks match few objects
        return {"dci": {"status": f"DCI needs at least 4 slots matched to objects, got {len(codes)}"}}
    keep = ("disentanglement", "completeness", "informativeness", "n_objects")
    return {"dci" if e == "paper" else f"dci_{e}": {k: d[k] for k in keep} | {"factors": names, "estimator": e,
                                                                           "n_scenes": x.shape[0]}
            for e in cfg.dci_estimators for d in [dci(codes, factors, kinds, seed=cfg.seed, estimator=e)]}


@torch.no_grad()
def held_out_kl(model, images: torch.Tensor, batch_size: int) -> dict:
    """Fig. 6a's test KL: the scene and slot KL per image in nats (no free bits), mean over uint8 images [N,H,W,3]."""
    device, parts = device_of(model), []
    for batch in images.split(batch_size):
        parts.append({k: v.cpu() for k, v in model.kl_terms(model.infer(to_float_images(batch).to(device))).items()})
    scene, slot = (torch.cat([p[k] for p in parts]).double().mean().item() for k in ("scene_kl", "slot_kl"))
    return {"kl": scene + slot, "scene_kl": scene, "slot_kl": slot, "n": len(images)}


@torch.no_grad()
def fid_by_temperature(model, real: torch.Tensor, cfg: LOMEval, generator: torch.Generator, measured: dict) -> dict:
    """Fig. 7: FID of n_samples samples at each temperature against the same test scenes (uint8 [N,3,H,W]),
    their Inception features computed once; at the evaluation's own temperature, its FID (`measured`, the
    shared evaluation's metrics over the same n_samples and scenes) is reused rather than sampled again."""
    if measured.get("fid") is None:  # no network here (a deferred FID cannot sweep temperatures later either)
        return {"status": "not computed: FID " + measured.get("status", "unavailable")}
    fids = {}
    with tempfile.TemporaryDirectory() as cache:
        for tau in cfg.fid_temperatures:
            if tau == measured["temperature"]:
                fids[str(tau)] = measured["fid"]
                continue
            r = evaluate_samples(real, lambda b: model.sample(b, tau, generator=generator)["images"], cfg.n_samples,
                                 key="fig7", temperature=tau, quantisation=cfg.quantisation, cache_dir=Path(cache))
            fids[str(tau)] = r["fid"]
    return {"fid": fids, "n": cfg.n_samples}


@torch.no_grad()
def figures(model, out: Path, cfg: LOMEval, generator: torch.Generator) -> dict:
    """Fig. 7's temperatures as rows of samples and masks, and Fig. 4: slerp between two scene prior samples."""
    rows = []
    for tau in cfg.temperatures:
        s = model.sample(8, tau, generator=generator)
        rows += [s["images"].cpu(), colour_masks(s["masks"].cpu())]
    paths = {"temperatures": save_png(grid(rows), out / "temperatures.png", scale=2)}
    if not has_scene(model):  # A.5 Model 7: nothing to interpolate
        return {k: p.name for k, p in paths.items()}
    device, rows = device_of(model), []
    for _ in range(4):
        ends = torch.randn(2, model.config.scene_dim, generator=generator, device=device)
        s = slerp(ends[0], ends[1], torch.linspace(0, 1, cfg.interpolation_steps, device=device))  # [T,D_s]
        rows.append(model.sample(len(s), cfg.temperature, generator=generator, s=s)["images"].cpu())
    paths["interpolation"] = save_png(grid(rows), out / "interpolation.png", scale=2)
    return {k: p.name for k, p in paths.items()}


def has_scene(model) -> bool:
    """Whether the model has a scene latent s (every LOM; not A.5's Model 7)."""
    return getattr(model, "scene_encoder", None) is not None


def evaluate(stage: Stage) -> Path:
    """The whole evaluation of this stage's run into its seed folder (metrics.json and figures)."""
    exp = stage.experiment()
    cfg = from_dict(LOMEval, exp.eval, "eval")
    out = stage.seed_dir
    out.mkdir(parents=True, exist_ok=True)
    args = SimpleNamespace(run=stage.run_dir, n=cfg.n_samples, temperature=cfg.temperature, quantisation=cfg.quantisation,
                           bpd_n=cfg.bpd_n, ari_n=cfg.ari_n, cache=None, seed=cfg.seed, out=out)
    generative_evaluation(args)  # out/metrics.json, samples.png (Fig. 3, masks by slot number: Fig. 3d)
    record = json.loads((out / "metrics.json").read_text())
    _, model = load_run(stage.run_dir)
    model = model.to(eval_device()).eval()
    generator = torch.Generator(device=device_of(model)).manual_seed(cfg.seed + 1)
    samples = draw(model, cfg.order_n, cfg.temperature, generator, cfg.batch_size)
    record["generation_order"] = generation_order(samples["masks"])  # Fig. 3d in numbers
    judge = s_acc_judge(exp.data.name, stage.profile)
    if judge is not None:
        record["s_acc"] = s_acc(model, judge, cfg.s_acc_n, cfg.s_acc_paper_n, cfg.temperature,
                                cfg.quantisation, cfg.batch_size, generator)
    _, test = load_scenes(exp.data, exp.data.eval_split, max(cfg.bpd_n, cfg.n_samples, cfg.retrieval_queries))
    record["test_kl"] = held_out_kl(model, test["image"][:cfg.bpd_n], cfg.batch_size)
    if cfg.fid_temperatures:
        real = test["image"][:cfg.n_samples].permute(0, 3, 1, 2)  # uint8 [N,3,H,W]
        record["fid_by_temperature"] = fid_by_temperature(model, real, cfg, generator, record["metrics"])
    if cfg.dci:
        record.update(table3(model, exp, cfg))
    record["figures"] = figures(model, out, cfg, generator)
    if cfg.retrieval and has_scene(model):
        database = load_scenes(exp.data, exp.data.train_split, min(cfg.retrieval_n, exp.data.n_train))[1]["image"]
        queries = test["image"][-cfg.retrieval_queries:]  # held out: test scenes, none in the database
        record["retrieval"] = retrieval_figure(model, database, queries, out / "retrieval.png", cfg.batch_size)
    record.update(dataset=stage.dataset, config=exp.model_config, eval=dataclasses.asdict(cfg))
    (out / "metrics.json").write_text(json.dumps(record, indent=2))
    return out / "metrics.json"
