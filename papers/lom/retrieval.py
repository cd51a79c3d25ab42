"""LOM App. A.6: scene retrieval with the hierarchical latents. A database of (s, z) pairs (the posterior means of
q(s | x) and of the ordered slots) from training scenes; the scene latents projected by PCA to 6 dimensions
(fitted on the database); for a held-out query, the top 5 scenes by Euclidean distance in that space; then those
5 re-ranked by how close their nearest slot is to one slot of the query (Figs. 8-9).

Which query slot: the paper picks one by hand ("the green cone"). Ours is the slot whose decoded mask is the
smallest one covering at least 1 % of the image, an object rather than the background or a wall.
"""
from __future__ import annotations

from pathlib import Path

import torch
from sklearn.decomposition import PCA
from torch import Tensor

from common.evaluate import device_of
from common.train.loop import to_float_images
from common.viz import grid, save_png

PCA_DIM = 6  # "we ... select the projection dimension of 6" (App. A.6)
TOP = 5  # the top 5 retrieved scenes


@torch.no_grad()
def encode(model, images: Tensor, batch_size: int = 100, masks: bool = False) -> dict[str, Tensor]:
    """uint8 images [N,H,W,3] -> s [N,D_s], z [N,K,D_z] (posterior means, slots in generation order) and, with
    `masks`, the masks LOM's decoder draws from z [N,K,1,H,W], on the CPU."""
    out = {"s": [], "z": []} | ({"masks": []} if masks else {})
    for batch in images.split(batch_size):
        t = model.infer(to_float_images(batch).to(device_of(model)))
        z = t["q_z"].mean
        out["s"].append(t["q_s"].mean.cpu()), out["z"].append(z.cpu())
        if masks:
            out["masks"].append(model.decode(z)[1].exp().cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def nearest(database: Tensor, queries: Tensor, k: int = TOP) -> Tensor:
    """Indices [Q,k] of each query's k nearest database rows by Euclidean distance, nearest first."""
    return torch.cdist(queries, database).topk(k, dim=1, largest=False).indices


def rerank(slot: Tensor, candidates: Tensor) -> Tensor:
    """slot [D] of the query, candidates' slots [C,K,D] -> the candidates' order [C] by the distance from the
    query slot to each candidate's nearest slot, nearest first."""
    distance = (candidates - slot).norm(dim=-1).min(dim=1).values  # [C]
    return distance.argsort()


def query_slot(masks: Tensor, min_area: float = 0.01) -> int:
    """The query's object slot: the smallest decoded mask [K,1,H,W] covering at least min_area of the image."""
    area = masks.flatten(1).mean(1)  # [K]
    area = torch.where(area >= min_area, area, torch.full_like(area, float("inf")))
    return int(area.argmin())


def retrieval_figure(model, database: Tensor, queries: Tensor, path: Path, batch_size: int = 100) -> dict:
    """Figs. 8-9 for each query: a row of the query and its top 5 by s, then a row of the query's chosen slot
    (its image under that slot's mask) and the top 5 re-ranked by that slot. Returns PCA's explained variance
    ratios and where each query's re-ranking moved the scenes."""
    db, q = encode(model, database, batch_size), encode(model, queries, batch_size, masks=True)
    pca = PCA(n_components=min(PCA_DIM, *db["s"].shape)).fit(db["s"].double().numpy())
    project = lambda s: torch.from_numpy(pca.transform(s.double().numpy()))  # noqa: E731
    top = nearest(project(db["s"]), project(q["s"]), min(TOP, len(database)))  # [Q,TOP]
    rows, orders = [], []
    q_images = to_float_images(queries)  # [Q,3,H,W]
    for i, found in enumerate(top):
        k = query_slot(q["masks"][i])
        order = rerank(q["z"][i, k], db["z"][found])
        rows.append(torch.cat([q_images[i:i + 1], to_float_images(database[found])]))
        rows.append(torch.cat([q_images[i:i + 1] * q["masks"][i, k], to_float_images(database[found[order]])]))
        orders.append(order.tolist())
    save_png(grid(rows), path, scale=2)
    return {"figure": path.name, "database": len(database), "queries": len(queries),
            "pca_explained_variance_ratio": pca.explained_variance_ratio_.tolist(), "rerank_orders": orders}
