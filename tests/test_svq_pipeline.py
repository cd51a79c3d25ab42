"""SVQ's pipeline and evaluation (papers/svq/pipeline.py, evaluate.py): the codes the priors learn, the App. A.1
analyses against hand computations, which runs each config reads, and the smoke pipeline through the CLI."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from common.config import ConfigError
from common.pipeline import Stage
from papers.svq.evaluate import (block_analysis, code_usage, most_used, prior_stage, runs_beside, scenes_stage,
                                 sysbinder_stage, traversal, vqvae_stage)
from papers.svq.model import SVQ, SVQConfig
from papers.svq.vqvae import VQVAE, VQVAEConfig

ROOT = Path(__file__).resolve().parents[1]


def _svq() -> SVQ:
    torch.manual_seed(0)
    return SVQ(SVQConfig(resolution=(16, 16), num_slots=2, blocks=2, block_dim=4, codebook_size=4, cnn_hidden=8,
                         feature_dim=8, mlp_hidden=8, vocab=8, dvae_hidden=8, d_model=16, decoder_layers=1,
                         heads=2)).eval()


def test_code_usage_and_most_used_against_hand_counts():
    indices = torch.tensor([[[0, 1], [0, 2]], [[3, 1], [0, 1]]])  # [n=2,N=2,M=2]
    usage = code_usage(indices, 4)
    assert usage["used"] == [2, 2]  # block 0: codes 0 (x3), 3; block 1: 1 (x3), 2
    p = torch.tensor([0.75, 0.25])
    expected = float(torch.exp(-(p * p.log()).sum()))
    assert usage["perplexity"] == pytest.approx([expected, expected], rel=1e-5)
    assert most_used(indices, 0, 4, 2).tolist() == [0, 3]
    assert most_used(indices, 1, 4, 3).tolist() == [1, 2, 0]  # ties (0 and 3 unused) by index


def test_block_analysis_shows_the_slots_holding_the_code_on_white():
    images = torch.zeros(2, 4, 4, 3, dtype=torch.uint8)  # black scenes
    masks = torch.zeros(2, 2, 1, 4, 4)
    masks[1, 0, :, :, :2] = 1  # scene 1, slot 0: the left half
    indices = torch.tensor([[[0], [1]], [[1], [0]]])  # block 0: scene 0 slot 1 and scene 1 slot 0 hold code 1
    rows = block_analysis(images, masks, indices, 0, torch.tensor([1]), per_code=3)
    assert len(rows) == 1 and rows[0].shape == (3, 3, 4, 4)
    torch.testing.assert_close(rows[0][0], torch.ones(3, 4, 4))  # scene 0 slot 1: an empty mask shows white
    left = torch.ones(3, 4, 4)
    left[..., :2] = 0
    torch.testing.assert_close(rows[0][1], left)  # scene 1 slot 0: its black object where its mask is, white elsewhere
    torch.testing.assert_close(rows[0][2], torch.ones(3, 4, 4))  # only two slots use the code: padding


def test_traversal_changes_one_block_of_one_slot_and_keeps_the_rest():
    svq = _svq()
    image = torch.randint(0, 256, (16, 16, 3), dtype=torch.uint8)
    torch.manual_seed(1)
    base = svq.encode(image[None].permute(0, 3, 1, 2).float() / 255)["indices"]  # [1,N,M]
    codes = {m: torch.arange(4) for m in range(2)}
    torch.manual_seed(1)
    rows = traversal(svq, image, codes, slots=2)
    assert len(rows) == 2 * 2 and rows[0].shape == (4, 3, 16, 16)
    plain = svq.decode(svq.slots_from_indices(base))[0]
    for row, (n, m) in zip(rows, [(0, 0), (0, 1), (1, 0), (1, 1)]):
        torch.testing.assert_close(row[base[0, n, m]], plain)  # the slot's own code: the image unchanged


def test_each_config_reads_the_runs_its_table_needs():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["svq"]
    sprites, clevr, variant = (Stage("svq", d, "smoke") for d in ("sprites4", "clevr_easy", "sprites4_m1"))
    assert scenes_stage(sprites).dataset == "sprites4_scenes"  # App. B.1: odd-one-out scenes for the priors
    assert scenes_stage(sprites).experiment().data.params["variant"] == "odd_one_out"
    assert sprites.experiment().data.params["variant"] == "random"
    assert scenes_stage(clevr) is clevr
    assert set(runs_beside(sprites)) == {"svq", "dvae", "vqvae"}
    assert set(runs_beside(clevr)) == {"svq", "dvae", "vqvae", "genesis"}
    assert runs_beside(variant) == {}
    assert params["downstream"] == ["sprites_quadrant", "clevr_hard"]
    for name in params["downstream"]:  # Tables 4-5 read SysBinder's run of the same scenes and a VQ-VAE
        stage = Stage("svq", name, "smoke")
        assert sysbinder_stage(stage).experiment().model_config["quantise"] is False
        assert sysbinder_stage(stage).experiment().data == stage.experiment().data
        assert name in params["vqvae"] and sysbinder_stage(stage).dataset in params["variants"]
    assert prior_stage(sprites, "dvae").run_dir.parent.name == "sprites4_dvae-smoke"
    assert params["generative"] == params["sprites"] + params["clevr"]


def test_priors_learn_the_frozen_svqs_codes_its_dvaes_tokens_and_the_vqvaes_grid(tmp_path, monkeypatch):
    from papers.svq import pipeline
    svq = _svq()
    stage = Stage("svq", "clevr_easy", "smoke")
    monkeypatch.setenv("OCREPRO_OUTPUT_ROOT", str(tmp_path))
    svq.save_pretrained(stage.run_dir / "model")
    images = torch.randint(0, 256, (5, 16, 16, 3), dtype=torch.uint8)
    monkeypatch.setattr(pipeline, "load_train_images", lambda data: images)
    torch.manual_seed(0)
    vq = VQVAE(VQVAEConfig(resolution=(16, 16), channels=8, res_blocks=1, codebook_size=4, code_dim=4)).eval()
    vq.save_pretrained(vqvae_stage(stage).run_dir / "model")
    monkeypatch.setattr(pipeline, "load_model", lambda run: vq if "_vqvae" in str(run) else svq)
    monkeypatch.setattr(pipeline, "DUMP_BATCH", 2)
    x = images.permute(0, 3, 1, 2).float() / 255
    torch.manual_seed(0)  # eval.seed: the one draw of slot noise
    expected = torch.cat([svq.encode(b)["indices"] for b in x.split(2)])
    codes = pipeline.dump(stage, "svq")
    assert torch.equal(codes, expected) and codes.shape == (5, 2, 2)
    tokens = pipeline.dump(stage, "dvae")
    assert torch.equal(tokens, svq.dvae.tokenize(x).flatten(1)[..., None]) and tokens.shape == (5, 16, 1)
    grid = pipeline.dump(stage, "vqvae")  # the VQ-VAE's code grid, from its own run
    assert torch.equal(grid, vq.encode(x)) and grid.shape == (5, 4, 4)
    monkeypatch.setattr(pipeline, "load_train_images", lambda data: pytest.fail("the dump is cached"))
    assert torch.equal(pipeline.dump(stage, "svq"), codes)


def test_a_variant_has_no_priors_and_clevr_no_odd_one_out_scenes():
    from papers.svq.evaluate import evaluate_downstream
    from papers.svq.pipeline import fit_genesis, fit_prior, fit_vqvae, prepare_scenes
    with pytest.raises(ConfigError, match="no priors"):
        fit_prior(Stage("svq", "sprites4_m1", "smoke"), "svq")
    with pytest.raises(ConfigError, match="nothing to prepare"):
        prepare_scenes(Stage("svq", "clevr_easy", "smoke"))
    with pytest.raises(ConfigError, match="no baselines"):
        fit_vqvae(Stage("svq", "clevr_easy_m1", "smoke"))
    with pytest.raises(ConfigError, match="no downstream task"):
        evaluate_downstream(Stage("svq", "sprites4", "smoke"))
    with pytest.raises(ConfigError, match="no GENESIS-v2"):
        fit_genesis(Stage("svq", "sprites4", "smoke"))


def test_smoke_pipeline_through_the_cli(tmp_path):
    """prepare -> scenes -> train -> prior -> dvae -> evaluate -> report on 2D Sprites, shrunk; without a judge the
    generation accuracy names the command that trains one, and the report says a smoke run is not a replication."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OCREPRO_OUTPUT_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    small = ["data.n_train=8", "data.n_eval=8", "train.steps=2", "eval.n_samples=4", "eval.accuracy_n=4",
             "eval.accuracy_paper_n=2", "eval.ari_n=4", "eval.analysis_n=4", "eval.traversal_codes=2",
             "eval.batch_size=4", "model_config.decoder_layers=1"]
    for stage in ("prepare", "scenes", "train", "prior", "dvae", "vqvae", "pixelcnn", "evaluate", "report"):
        cmd = [sys.executable, "-m", "papers.svq.pipeline", stage, "--dataset", "sprites4", "--profile", "smoke"]
        out = subprocess.run(cmd + [a for s in small for a in ("--set", s)], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, (stage, out.stderr[-2000:])
    seed = tmp_path / "reports/svq/sprites4-smoke/seeds/seed0"
    m = json.loads((seed / "metrics.json").read_text())
    assert m["model"] == "papers.svq.model:SVQ" and m["steps"] == 2 and m["metrics"]["n_samples"] == 4
    generative = m["metrics"]["generative"]
    assert set(generative) == {"svq", "dvae", "vqvae"}
    assert "profile_judge --task generation_accuracy" in generative["svq"]["generation_accuracy"]["status"]
    assert all((seed / f).is_file() for f in ("samples_svq.png", "samples_dvae.png", "samples_vqvae.png", "traversal.png",
                                              "blocks.png",
                                              "codebook_health.png", "reconstruction.png"))
    report = (tmp_path / "reports/svq/sprites4-smoke/report.md").read_text()
    assert "not a replication" in report and "Table 2 (SVQ)" in report
    prior = yaml.safe_load((tmp_path / "runs/svq/sprites4_prior-smoke/seed0/config.yaml").read_text())
    assert prior["model_config"]["num_slots"] == 6 and prior["model_config"]["blocks"] == 4
    assert prior["data"]["path"].endswith("sprites4_scenes-smoke")  # App. B.1: the odd-one-out scenes
    dvae = yaml.safe_load((tmp_path / "runs/svq/sprites4_dvae-smoke/seed0/config.yaml").read_text())
    assert dvae["model_config"]["num_slots"] == 16 * 16 and dvae["model_config"]["codebook_size"] == 64
    pixelcnn = yaml.safe_load((tmp_path / "runs/svq/sprites4_pixelcnn-smoke/seed0/config.yaml").read_text())
    assert pixelcnn["model_config"]["grid"] == [16, 16] and pixelcnn["model_config"]["codebook_size"] == 16


TABLE6 = {  # SVQ Table 6: (image size, codebook dimension, blocks, codebook size, slots)
    "clevr_easy": (128, 256, 8, 64, 4), "clevr_hard": (128, 128, 16, 64, 4), "sprites3": (64, 256, 8, 64, 6),
    "sprites4": (64, 256, 8, 64, 6), "sprites4_bg": (64, 32, 8, 128, 8),
    "clevr_tex": (128, 256, 8, 64, 4)}  # not in Table 6: CLEVR-Easy's (papers/svq/README.md)


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "papers/svq/configs").glob("*.yaml")
                                         if p.stem not in ("prior", "vqvae", "pixelcnn")))
def test_every_config_has_table6_at_the_paper_profile_and_takes_a_smoke_step(name):
    from common.train.experiment import build_model, load_experiment
    from common.train.loop import to_float_images
    path = ROOT / "papers/svq/configs" / f"{name}.yaml"
    paper = load_experiment(path, "paper")
    mc, train = paper.model_config, paper.train
    if name in TABLE6:
        assert (mc["resolution"][0], mc["block_dim"], mc["blocks"], mc["codebook_size"], mc["num_slots"]) == TABLE6[name]
    assert (train.batch_size, train.steps, train.lr) == (40, 400_000, 1e-4)
    exp = load_experiment(path, "smoke")
    torch.manual_seed(0)
    model = build_model(exp)
    size = exp.data.params.get("size", 64)
    images = torch.randint(0, 256, (2, size, size, 3), dtype=torch.uint8)
    out = model(to_float_images(images), step=0)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert out.recon.shape == (2, 3, size, size)
