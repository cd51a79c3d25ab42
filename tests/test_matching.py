import itertools

import numpy as np
import torch

from common.matching import greedy_matching, hungarian_matching, hungarian_permutation, pairwise_distance


def test_greedy_follows_algorithm_1():
    # Row 0 takes its best column 1; row 1's best (column 1) is gone, takes column 2; row 2 gets column 0.
    cost = torch.tensor([[[5.0, 1.0, 4.0], [3.0, 0.5, 2.0], [0.1, 0.2, 9.0]]])
    assert greedy_matching(cost).tolist() == [[1, 2, 0]]


def test_greedy_is_a_permutation_and_recovers_shuffles():
    mu = torch.randn(8, 5, 16)
    perm = torch.stack([torch.randperm(5) for _ in range(8)])
    shuffled = torch.gather(mu, 1, perm[..., None].expand(-1, -1, 16))
    found = greedy_matching(pairwise_distance(mu, shuffled))
    assert (found.sort(-1).values == torch.arange(5)).all()
    torch.testing.assert_close(torch.gather(shuffled, 1, found[..., None].expand(-1, -1, 16)), mu)


def test_hungarian_against_brute_force():
    rng = np.random.default_rng(0)
    for k in range(1, 7):
        cost = rng.random((3, k, k))
        perm = hungarian_permutation(torch.tensor(cost))
        for b in range(3):
            best = min(sum(cost[b, i, p[i]] for i in range(k)) for p in itertools.permutations(range(k)))
            got = sum(cost[b, i, perm[b, i]] for i in range(k))
            assert np.isclose(got, best)


def test_hungarian_rectangular_and_maximize():
    iou = np.array([[[0.1, 0.9, 0.0], [0.8, 0.2, 0.1]]])
    rows, cols = hungarian_matching(iou, maximize=True)[0]
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 0}
