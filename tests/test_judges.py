"""The judges' rules on hand-built cases, the labels from generator factors, the Wilson interval."""

import numpy as np
import pytest

from common.metrics.judges.data import SPRITE_KINDS, sprite_codes, sprite_scenes, valid_from_counts, value_counts
from common.metrics.judges.rules import odd_one_out_valid, stack_plausible, unique_values, wilson_interval


@pytest.mark.parametrize("codes,valid", [
    ([[0, 5], [0, 5], [1, 5]], True),  # colour 1 unique, shapes all shared
    ([[0, 5], [0, 6], [0, 5], [0, 6]], False),  # no unique value
    ([[0, 5], [1, 5], [2, 5]], False),  # three unique colours
    ([[0, 5], [0, 5], [1, 6]], False),  # one object unique in both properties at once
    ([[0, 5], [0, 5], [1, 6], [1, 7]], False),  # ... and two objects with a unique shape each
    ([[3, 1], [3, 2], [4, 1], [4, 1]], True),  # shape 2 is the only unique value
])
def test_the_odd_one_out_rule_on_hand_built_scenes(codes, valid):
    codes = np.array(codes)
    assert odd_one_out_valid(codes) is valid
    assert valid_from_counts(value_counts(codes[None]))[0] == valid  # the same rule read from counts


def test_unique_values_names_objects_and_properties():
    assert unique_values(np.array([[0, 5], [0, 5], [1, 6]])) == [(2, 0), (2, 1)]


def test_the_touching_rule():
    assert stack_plausible(np.array([True, True, True]), np.zeros(3))
    assert not stack_plausible(np.array([True, False, True]), np.zeros(3))  # a floating block
    assert not stack_plausible(np.array([True, True]), np.array([0.0, 0.05]))  # two blocks share space
    assert stack_plausible(np.array([True, True]), np.array([0.0, 0.005]))  # contact within tolerance


@pytest.mark.parametrize("kind", SPRITE_KINDS)
def test_generator_labels_agree_with_the_rule_and_near_misses_are_misses(kind):
    rng = np.random.default_rng(0)
    for m in (3, 4):
        for _ in range(50):
            codes = sprite_codes(kind, m, rng)
            assert codes.shape == (m, 2)
            if kind == "odd_one_out":
                assert odd_one_out_valid(codes)
            elif kind != "random":  # the near misses always break the rule
                assert not odd_one_out_valid(codes), (kind, codes)


def test_sprite_scenes_are_labelled_by_the_rule_on_their_codes():
    d = sprite_scenes(60, seed=3)
    assert d["image"].shape == (60, 64, 64, 3) and set(np.unique(d["setting"])) == {0, 1, 2}
    np.testing.assert_array_equal(d["label"], valid_from_counts(d["counts"]))
    assert 0.3 < d["label"].mean() < 0.7
    again = sprite_scenes(60, seed=3)
    assert all(np.array_equal(d[k], again[k]) for k in d)


def test_wilson_interval_against_its_closed_form():
    """Wilson's interval is where the score test is at z: (p_hat - p)^2 n = z^2 p (1 - p), a quadratic in p."""
    z = 1.959963984540054
    for k, n in ((81, 100), (3, 128), (990, 1000)):
        p_hat = k / n
        roots = np.sort(np.roots([n + z**2, -(2 * n * p_hat + z**2), n * p_hat**2]).real)
        assert wilson_interval(k, n) == pytest.approx(tuple(roots), abs=1e-12)
    assert wilson_interval(81, 100) == pytest.approx((0.72221, 0.87485), abs=1e-5)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


def test_a_tiny_judge_round_trips_and_scores_a_folder_of_pngs(tmp_path):
    import torch
    from PIL import Image

    from common.metrics.judges.data import SPRITE_SETTINGS
    from common.metrics.judges.model import Judge, JudgeConfig
    from common.metrics.judges.score import judge_id, load_pngs, score, verdicts
    from common.metrics.judges.train import fit, measure
    torch.manual_seed(0)
    d = sprite_scenes(48, seed=1)
    judge = Judge(JudgeConfig(channels=(8, 8), hidden=16))
    fit(judge, torch.from_numpy(d["image"]), torch.from_numpy(d["counts"]), steps=2, batch_size=8, lr=1e-3, seed=0,
        log=lambda *_: None)
    accuracy = measure(judge, d, SPRITE_KINDS, SPRITE_SETTINGS)
    assert set(accuracy) == {"clean", "degraded", "clean_reading", "degraded_reading"}
    assert accuracy["clean"]["overall"]["n"] == 48
    judge.save_pretrained(tmp_path / "judge", metrics={"accuracy": accuracy})
    again = Judge.from_pretrained(tmp_path / "judge")
    x = torch.from_numpy(d["image"][:10]).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(verdicts(judge.eval(), x), verdicts(again, x))
    for i, img in enumerate(d["image"][:10]):
        Image.fromarray(img).save(tmp_path / f"{i:03d}.png")
    images = load_pngs(tmp_path)
    assert torch.equal(images, x)  # PNG is lossless: the judge sees the very pixels
    record = score(tmp_path / "judge", images, n=8)
    k = round(record["accuracy"] * 8)
    assert record["n"] == 8 and record["interval_95"] == pytest.approx(list(wilson_interval(k, 8)))
    assert record["judge_sha256"] == judge_id(tmp_path / "judge") and len(record["judge_sha256"]) == 64
    assert record["judge_accuracy"]["clean"]["n"] == 48
    with pytest.raises(ValueError, match="reads \\(64, 64\\) images"):
        verdicts(again, torch.zeros(1, 3, 32, 32))
