import numpy as np
import pytest

from common.data import dsprites, sprites, tetrominoes
from common.data.registry import generate_split
from common.data.schema import validate


def _interior(mask: np.ndarray, label: int) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood lies in the object's mask."""
    m = np.pad(mask == label, 1)
    out = np.ones_like(mask, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out &= m[1 + dy:m.shape[0] - 1 + dy, 1 + dx:m.shape[1] - 1 + dx]
    return out


CASES = [("tetrominoes", {}), ("multi_dsprites", {}), ("sprites", {}), ("sprites", {"num_objects": 3}),
         ("sprites", {"variant": "random"}), ("sprites", {"variant": "quadrant", "palette": "id"}),
         ("sprites", {"variant": "quadrant", "palette": "ood"}), ("sprites", {"textured_background": True})]


@pytest.mark.parametrize("name,params", CASES)
def test_schema_and_determinism(name, params):
    meta, a = generate_split(name, 40, seed=3, params=params)
    assert validate(a, meta) == 40
    _, b = generate_split(name, 40, seed=3, params=params)
    _, c = generate_split(name, 40, seed=4, params=params)
    _, d = generate_split(name, 40, seed=3, split="test", params=params)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["image"], c["image"]) and not np.array_equal(a["image"], d["image"])


def test_tetrominoes_exact_pieces_and_colours():
    meta, b = generate_split("tetrominoes", 200, seed=0)
    palette = np.array(list(tetrominoes.COLOURS.values()))
    for img, mask, colour in zip(b["image"], b["mask"], b["factor.colour"]):
        assert np.bincount(mask.reshape(-1), minlength=4)[1:].tolist() == [100, 100, 100]  # no overlap
        assert (img[mask == 0] == 0).all()
        for j in range(3):
            assert (img[mask == j + 1] == palette[colour[j]]).all()


def test_tetrominoes_compose_places_pieces_and_refuses_bad_ones():
    scene = tetrominoes.compose([("O", 0, 0, "red"), ("I1", 10, 30, "cyan")])
    assert (scene["mask"] == 1).sum() == 100 and (scene["mask"][:10, :10] == 1).all()
    assert (scene["image"][scene["mask"] == 2] == (0, 255, 255)).all() and (scene["image"][scene["mask"] == 0] == 0).all()
    with pytest.raises(ValueError, match="overlaps"):
        tetrominoes.compose([("O", 0, 0, "red"), ("O", 5, 5, "red")])
    with pytest.raises(ValueError, match="leaves the 35px image"):
        tetrominoes.compose([("I0", 0, 20, "red")])
    with pytest.raises(ValueError, match="unknown shape 'Q'"):
        tetrominoes.compose([("Q", 0, 0, "red")])


def test_dsprites_masks_carry_sprite_colours_on_grey():
    _, b = generate_split("multi_dsprites", 200, seed=0)
    for img, mask, colour, vis in zip(b["image"], b["mask"], b["factor.colour"], b["visibility"]):
        bg = img[mask == 0]
        assert (bg == bg[0]).all() and (bg[:, 0] == bg[:, 1]).all() and (bg[:, 1] == bg[:, 2]).all()
        for j in np.flatnonzero(vis):
            assert (img[mask == j + 1] == np.round(colour[j] * 255)).all()
    assert 2 <= b["num_objects"].min() and b["num_objects"].max() == 5


def test_sprites_interior_pixels_carry_the_object_colour():
    _, b = generate_split("sprites", 300, seed=0)
    rgb = np.array(list(sprites.COLOURS.values()))
    exact = total = 0
    for img, mask, colour in zip(b["image"], b["mask"], b["factor.colour"]):
        for j in range(4):
            inner = _interior(mask, j + 1)
            total += inner.sum()
            exact += (img[inner] == rgb[colour[j]]).all(-1).sum()
    assert total > 0 and exact / total > 0.995  # antialiased tips of stars may be partial
    for img, mask in zip(b["image"], b["mask"]):
        far = mask == 0
        for _ in range(3):  # erode the background 3 px away from every sprite
            far = _interior(far.astype(np.uint8), 1)
        assert far.any() and (img[far] == 0).all()


def _unique_counts(codes: np.ndarray) -> int:
    """Number of property values that occur exactly once in their column."""
    return sum(int((np.bincount(col) == 1).sum()) for col in codes.T)


@pytest.mark.parametrize("params", [{}, {"num_objects": 3}, {"variant": "quadrant", "palette": "id"},
                                    {"variant": "quadrant", "palette": "ood"}, {"textured_background": True}])
def test_odd_one_out_rule_holds_on_every_scene(params):
    _, b = generate_split("sprites", 500, seed=1, params=params)
    for shape, colour, odd, prop in zip(b["factor.shape"], b["factor.colour"], b["factor.odd"], b["factor.odd_property"]):
        codes = np.stack([colour, shape], 1)
        assert _unique_counts(codes) == 1 and odd.sum() == 1
        target = int(np.flatnonzero(odd)[0])
        column = codes[:, prop[0]]
        assert (column == column[target]).sum() == 1
        assert all((codes[:, p] == codes[target, p]).sum() >= 2 for p in range(2) if p != prop[0])


def test_random_variant_has_no_rule():
    _, b = generate_split("sprites", 300, seed=1, params={"variant": "random"})
    counts = [_unique_counts(np.stack([c, s], 1)) for s, c in zip(b["factor.shape"], b["factor.colour"])]
    assert max(counts) > 1


@pytest.mark.parametrize("palette", ["id", "ood"])
def test_quadrant_labels_and_palettes(palette):
    _, b = generate_split("sprites", 300, seed=2, params={"variant": "quadrant", "palette": palette})
    shapes, colours = sprites.PALETTES[palette]
    assert set(np.unique(b["factor.shape"])) <= set(shapes) and set(np.unique(b["factor.colour"])) <= set(colours)
    for mask, quadrant, odd in zip(b["mask"], b["factor.quadrant"], b["factor.odd"]):
        assert sorted(quadrant.tolist()) == [0, 1, 2, 3]  # one object per quadrant
        for j in range(4):
            ys, xs = np.nonzero(mask == j + 1)
            assert ((ys.mean() >= 32) * 2 + (xs.mean() >= 32)) == quadrant[j]
    labels = (b["factor.quadrant"] * b["factor.odd"]).sum(1)
    assert set(np.unique(labels)) == {0, 1, 2, 3}


def test_bad_generator_parameters_are_named():
    from common.config import ConfigError
    with pytest.raises(ConfigError, match="unknown config key 'params.colours'"):
        generate_split("sprites", 4, 0, params={"colours": 3})
    with pytest.raises(ValueError, match="quadrant variant has exactly 4"):
        generate_split("sprites", 4, 0, params={"variant": "quadrant", "num_objects": 3})
    with pytest.raises(ConfigError, match="unknown generator 'clevr'"):
        generate_split("clevr", 4, 0)


def test_hsv_conversion_matches_colorsys():
    import colorsys
    hsv = np.random.default_rng(0).random((50, 3))
    expected = np.array([colorsys.hsv_to_rgb(*c) for c in hsv])
    np.testing.assert_allclose(dsprites.hsv_to_rgb(hsv), expected, atol=1e-12)
