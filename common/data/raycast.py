"""A batched PyTorch ray caster over analytic primitives for CLEVR-like scenes.

World: z up, ground plane z = 0. Primitives rest on the ground: sphere (radius r), cube (half-extent
r, rotated about z), cylinder (radius r, half-height r), cone (base radius r, height 2r). Shading:
Lambert + Blinn-Phong from three point lights (key, fill, back) with soft shadows (the area light
sampled at stratified offsets), one mirror bounce for metal, adaptive 2x2 supersampling (silhouettes
and metal); the instance mask comes from one centre ray per pixel. Everything is a tensor op over [B, rays, objects], so one call renders a
batch of scenes.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

SPHERE, CUBE, CYLINDER, CONE = 0, 1, 2, 3
INF = 1e9
EPS = 1e-4


@dataclass
class Scenes:
    """A batch of scenes, objects padded to M (inactive objects never hit).

    shape [B,M] int, centre [B,M,3], radius [B,M], angle [B,M] (radians about z), albedo [B,M,3],
    metal [B,M] bool, active [B,M] bool, camera [B,3] position, target [B,3].
    """

    shape: Tensor
    centre: Tensor
    radius: Tensor
    angle: Tensor
    albedo: Tensor
    metal: Tensor
    active: Tensor
    camera: Tensor
    target: Tensor
    material: Tensor | None = None  # [B,M] texture material ids (textured scenes only)
    ground_material: Tensor | None = None  # [B]

    def take(self, rows: Tensor) -> "Scenes":
        """The scenes at `rows` (repeats allowed)."""
        return Scenes(*(None if v is None else v[rows] for v in (getattr(self, f.name) for f in dataclasses.fields(self))))


def camera_rays(scenes: Scenes, rows: Tensor, cols: Tensor, frame: tuple[int, int], hfov: float):
    """Rays through full-frame pixel coordinates (rows, cols: [P] shared by all scenes, or [B,P] per
    scene; continuous) of a H x W frame. Returns origins [B,P,3] and unit directions [B,P,3]."""
    h, w = frame
    f, r, u = _basis(scenes)  # [B,3] each
    tan = math.tan(hfov / 2)
    x = torch.atleast_2d((2 * cols / w - 1) * tan)  # [1 or B,P]
    y = torch.atleast_2d((1 - 2 * rows / h) * tan * h / w)
    d = f[:, None] + x[..., None] * r[:, None] + y[..., None] * u[:, None]  # [B,P,3]
    return scenes.camera[:, None].expand_as(d), torch.nn.functional.normalize(d, dim=-1)


def _to_local(v: Tensor, angle: Tensor) -> Tensor:
    """Rotate vectors v [...,3] by -angle [...] about z."""
    c, sn = torch.cos(angle), torch.sin(angle)
    return torch.stack([c * v[..., 0] + sn * v[..., 1], -sn * v[..., 0] + c * v[..., 1], v[..., 2]], -1)


# Bounding-sphere radius / r per primitive: sphere 1, cube sqrt(3), cylinder and cone sqrt(2).
BOUND = torch.tensor([1.0, math.sqrt(3), math.sqrt(2), math.sqrt(2)]) * 1.001


def _quadratic(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """Smallest root > EPS of a t^2 + 2 b t + c, else INF."""
    disc = b * b - a * c
    sq = torch.sqrt(disc.clamp(min=0))
    a = torch.where(a.abs() < 1e-12, torch.full_like(a, 1e-12), a)
    t0, t1 = (-b - sq) / a, (-b + sq) / a
    t = torch.where(t0 > EPS, t0, torch.where(t1 > EPS, t1, torch.full_like(t0, INF)))
    return torch.where(disc >= 0, t, torch.full_like(t, INF))


def intersect(o: Tensor, d: Tensor, s: Scenes) -> Tensor:
    """Distance from every ray to every object [B,P,M] (INF on a miss).

    A bounding-sphere test over all (ray, object) pairs, written as matrix products, selects the
    candidate pairs; only those are moved into the object's frame and tested exactly.
    """
    R2 = (BOUND.to(s.radius.device)[s.shape] * s.radius) ** 2  # [B,M]
    dc = torch.einsum("bpk,bmk->bpm", d, s.centre)  # d . c
    oc = torch.einsum("bpk,bmk->bpm", o, s.centre)  # o . c
    b = (d * o).sum(-1, keepdim=True) - dc  # d . (o - c)
    c = (o * o).sum(-1, keepdim=True) - 2 * oc + (s.centre ** 2).sum(-1)[:, None] - R2[:, None]
    cand = (b * b >= c) & ((b < 0) | (c < 0)) & s.active[:, None]  # the bounding sphere is ahead
    bi, pi, mi = cand.nonzero(as_tuple=True)
    t = torch.full(cand.shape, INF, device=d.device)
    if len(bi):
        angle, r, kind = s.angle[bi, mi], s.radius[bi, mi], s.shape[bi, mi]
        lo = _to_local(o[bi, pi] - s.centre[bi, mi], angle)
        ld = _to_local(d[bi, pi], angle)
        hit = torch.full_like(r, INF)
        for k in kind.unique().tolist():  # short candidate lists: evaluate, then keep this kind's rows
            hit = torch.where(kind == k, PRIMITIVES[k](lo, ld, r), hit)
        t[bi, pi, mi] = hit
    return t


def _sphere(lo: Tensor, ld: Tensor, r: Tensor) -> Tensor:
    return _quadratic((ld * ld).sum(-1), (lo * ld).sum(-1), (lo * lo).sum(-1) - r * r)


def _cube(lo: Tensor, ld: Tensor, r: Tensor) -> Tensor:
    """Slab method on [-r, r]^3."""
    inv = 1.0 / torch.where(ld.abs() < 1e-12, torch.full_like(ld, 1e-12), ld)
    ta, tb = (-r[..., None] - lo) * inv, (r[..., None] - lo) * inv
    t_near, t_far = torch.minimum(ta, tb).amax(-1), torch.maximum(ta, tb).amin(-1)
    return torch.where((t_near <= t_far) & (t_far > EPS), torch.where(t_near > EPS, t_near, t_far),
                       torch.full_like(t_near, INF))


def _cylinder(lo: Tensor, ld: Tensor, r: Tensor) -> Tensor:
    """Side |xy| = r with |z| <= r, and caps at z = +-r."""
    (x, y, z), (dx, dy, dz) = lo.unbind(-1), ld.unbind(-1)
    t_side = _quadratic(dx * dx + dy * dy, x * dx + y * dy, x * x + y * y - r * r)
    t_side = torch.where((z + t_side * dz).abs() <= r, t_side, torch.full_like(t_side, INF))
    return torch.minimum(t_side, _cap(lo, ld, (r, -r), r))


def _cone(lo: Tensor, ld: Tensor, r: Tensor) -> Tensor:
    """Apex at local z = r, base disc of radius r at z = -r: radius (r - z) / 2 at height z."""
    (x, y, z), (dx, dy, dz) = lo.unbind(-1), ld.unbind(-1)
    k, zt = 0.25, z - r
    t = _quadratic(dx * dx + dy * dy - k * dz * dz, x * dx + y * dy - k * zt * dz, x * x + y * y - k * zt * zt)
    hz = z + t * dz
    t = torch.where((hz >= -r) & (hz <= r), t, torch.full_like(t, INF))
    return torch.minimum(t, _cap(lo, ld, (-r,), r))


def _cap(lo: Tensor, ld: Tensor, heights: tuple[Tensor, ...], r: Tensor) -> Tensor:
    """Disc caps of radius r at the given local heights: nearest hit, else INF."""
    out = torch.full_like(lo[..., 0], INF)
    for h in heights:
        t = (h - lo[..., 2]) / torch.where(ld[..., 2].abs() < 1e-12, torch.full_like(ld[..., 2], 1e-12), ld[..., 2])
        px, py = lo[..., 0] + t * ld[..., 0], lo[..., 1] + t * ld[..., 1]
        ok = (t > EPS) & (px * px + py * py <= r * r)
        out = torch.minimum(out, torch.where(ok, t, torch.full_like(t, INF)))
    return out


def nearest(o: Tensor, d: Tensor, s: Scenes) -> dict[str, Tensor]:
    """Closest hit among objects and the ground: index [B,P] (-1 ground, -2 sky), distance, point,
    normal, the hit point in the object's frame, and the nearest object's slot."""
    t_obj, idx = intersect(o, d, s).min(-1)  # [B,P]
    t_ground = torch.where(d[..., 2] < -1e-6, -o[..., 2] / d[..., 2].clamp(max=-1e-6), torch.full_like(t_obj, INF))
    on_ground = t_ground < t_obj
    dist = torch.where(on_ground, t_ground, t_obj)
    index = torch.where(on_ground, torch.full_like(idx, -1), idx)
    index = torch.where(dist >= INF / 2, torch.full_like(idx, -2), index)
    point = o + dist[..., None].clamp(max=1e3) * d
    g = lambda a: a.gather(1, idx)
    centre = s.centre.gather(1, idx[..., None].expand(-1, -1, 3))
    lp = _to_local(o + t_obj[..., None].clamp(max=1e3) * d - centre, g(s.angle))  # [B,P,3]
    normal = _normal(lp, s, idx)
    normal = torch.where(on_ground[..., None], torch.tensor([0.0, 0.0, 1.0], device=d.device), normal)
    return {"index": index, "dist": dist, "point": point, "normal": normal, "local": lp, "object": idx}


PRIMITIVES = {SPHERE: _sphere, CUBE: _cube, CYLINDER: _cylinder, CONE: _cone}


def _normal(lp: Tensor, s: Scenes, idx: Tensor) -> Tensor:
    """World normal of the object `idx` at local point lp [B,P,3]."""
    g = lambda a: a.gather(1, idx)  # [B,M] -> [B,P]
    shape, r, ang = g(s.shape), g(s.radius), g(s.angle)
    x, y, z = lp.unbind(-1)
    sphere = lp
    a = lp.abs()
    axis = a.argmax(-1, keepdim=True)
    cube = torch.zeros_like(lp).scatter(-1, axis, torch.sign(lp.gather(-1, axis)))
    on_cap = (z.abs() - r).abs() < 1e-3 * torch.ones_like(r)
    cyl = torch.where(on_cap[..., None], torch.stack([0 * x, 0 * y, torch.sign(z)], -1), torch.stack([x, y, 0 * z], -1))
    rr = torch.sqrt(x * x + y * y).clamp(min=1e-6)
    cone_side = torch.stack([x / rr, y / rr, 0.5 * torch.ones_like(z)], -1)
    cone = torch.where(((z + r).abs() < 1e-3)[..., None], torch.stack([0 * x, 0 * y, -torch.ones_like(z)], -1), cone_side)
    n = torch.stack([sphere, cube, cyl, cone], -2).gather(-2, shape[..., None, None].expand(*shape.shape, 1, 3))[..., 0, :]
    c, sn = torch.cos(ang), torch.sin(ang)
    n = torch.stack([c * n[..., 0] - sn * n[..., 1], sn * n[..., 0] + c * n[..., 1], n[..., 2]], -1)
    return torch.nn.functional.normalize(n, dim=-1)


@dataclass
class Lights:
    """Point lights (position [L,3], intensity [L]) with jitter radius for soft shadows, and ambient."""

    position: Tensor
    intensity: Tensor
    jitter: float = 0.5
    ambient: float = 0.2


CLEVR_LIGHTS = Lights(torch.tensor([[6.4, -2.9, 6.0], [-4.7, -4.3, 3.6], [-1.2, 6.7, 5.4]]),
                      torch.tensor([0.75, 0.35, 0.45]))


def shade(o: Tensor, d: Tensor, s: Scenes, lights: Lights, albedo_fn, sky: float, bounce: bool = True,
          jitter: Tensor | None = None, hit: dict | None = None) -> Tensor:
    """Colour [B,P,3] of rays o, d: Lambert + Blinn-Phong with shadows, one mirror bounce for metal
    (the bounced rays, only those that hit metal, are shaded without shadows or further bounces).
    jitter [P,3] in [-1,1]: each ray's offset on the area lights (soft shadows); `hit`: nearest(o, d, s)
    when the caller already has it."""
    hit = nearest(o, d, s) if hit is None else hit
    albedo = albedo_fn(hit, s)  # [B,P,3]
    metal = s.metal.gather(1, hit["object"]) & (hit["index"] >= 0)  # [B,P]
    n, p = hit["normal"], hit["point"] + hit["normal"] * 1e-3
    light = torch.full_like(albedo, lights.ambient)
    spec = torch.zeros_like(albedo[..., 0])
    for pos, power in zip(lights.position.to(d.device), lights.intensity.to(d.device)):
        to_light = pos + lights.jitter * (0 if jitter is None else jitter) - p
        dist = to_light.norm(dim=-1)
        ldir = to_light / dist[..., None]
        visible = power * ((intersect(p, ldir, s).amin(-1) >= dist).float() if bounce else 1.0)
        light = light + (visible * (n * ldir).sum(-1).clamp(min=0))[..., None]
        half = torch.nn.functional.normalize(ldir - d, dim=-1)
        spec = spec + visible * (n * half).sum(-1).clamp(min=0) ** torch.where(metal, 64.0, 8.0)
    colour = albedo * light + (torch.where(metal, 0.6, 0.05) * spec)[..., None]
    if bounce and bool(metal.any()):
        bi, pi = metal.nonzero(as_tuple=True)  # only the rays that hit metal bounce, each as a 1-ray scene
        nm, dm = n[bi, pi], d[bi, pi]
        r = (dm - 2 * (dm * nm).sum(-1, keepdim=True) * nm)[:, None]
        mirror = shade(p[bi, pi][:, None], r, s.take(bi), lights, albedo_fn, sky, False)[:, 0]
        colour = colour.index_put((bi, pi), 0.45 * colour[bi, pi] + 0.55 * mirror * (0.3 + 0.7 * albedo[bi, pi]))
    return torch.where((hit["index"] == -2)[..., None], torch.full_like(colour, sky), colour)


def flat_albedo(ground: float = 0.5):
    """Object albedo from Scenes.albedo, a grey ground."""
    def fn(hit, s: Scenes) -> Tensor:
        obj = s.albedo.gather(1, hit["object"][..., None].expand(-1, -1, 3))
        return torch.where((hit["index"] >= 0)[..., None], obj, torch.full_like(obj, ground))
    return fn


def _pixel_jitter(size: int, device) -> Tensor:
    """One area-light offset per pixel [P,3], cycling through a 2x2 stratification across pixels."""
    i = torch.arange(size, device=device)
    a = ((i[:, None] % 2) * 2 - 1).float().expand(size, size) * 0.5
    b = ((i[None, :] % 2) * 2 - 1).float().expand(size, size) * 0.5
    return torch.stack([a, b, a * b], -1).reshape(-1, 3)


def _edges(index: Tensor, metal: Tensor) -> Tensor:
    """Pixels [B,H,W] whose centre-ray hit differs from a 4-neighbour's, or that see metal."""
    pad = torch.nn.functional.pad(index, (1, 1, 1, 1), mode="replicate")
    centre = pad[:, 1:-1, 1:-1]
    differ = (pad[:, :-2, 1:-1] != centre) | (pad[:, 2:, 1:-1] != centre) | (pad[:, 1:-1, :-2] != centre) | (pad[:, 1:-1, 2:] != centre)
    return differ | metal


def render(s: Scenes, size: int, window: tuple[float, float, float, float], frame: tuple[int, int],
           hfov: float, lights: Lights = CLEVR_LIGHTS, albedo_fn=None, supersample: int = 2,
           sky: float = 0.55) -> tuple[Tensor, Tensor]:
    """Render the full-frame window (row0, row1, col0, col1) at size x size.

    One centre ray per pixel gives the instance mask [B,size,size] (object index + 1, 0 for ground
    and sky) and the pixel's first colour sample. Adaptive supersampling: pixels on a silhouette or
    seeing metal get the full supersample x supersample grid (averaged with nothing else); the rest
    keep the centre sample. Returns image [B,size,size,3] in [0,1] and the mask.
    """
    albedo_fn = albedo_fn or flat_albedo()
    r0, r1, c0, c1 = window
    device, b = s.centre.device, s.centre.shape[0]
    centre = (torch.arange(size, device=device) + 0.5) / size
    rows, cols = torch.meshgrid(r0 + centre * (r1 - r0), c0 + centre * (c1 - c0), indexing="ij")
    o, d = camera_rays(s, rows.reshape(-1), cols.reshape(-1), frame, hfov)
    hit = nearest(o, d, s)
    index = hit["index"]
    colour = shade(o, d, s, lights, albedo_fn, sky, jitter=_pixel_jitter(size, device), hit=hit)  # [B,P,3]
    mask = torch.where(index >= 0, index + 1, torch.zeros_like(index)).view(b, size, size)
    metal = (s.metal.gather(1, hit["object"]) & (index >= 0)).view(b, size, size)
    bi, yi, xi = _edges(index.view(b, size, size), metal).nonzero(as_tuple=True)
    if supersample > 1 and len(bi):
        k = supersample
        sub = (torch.arange(k, device=device) + 0.5) / k  # offsets inside a pixel
        dy, dx = torch.meshgrid(sub, sub, indexing="ij")
        prow = r0 + (yi[:, None].float() + dy.reshape(1, -1)) / size * (r1 - r0)  # [E,k*k]
        pcol = c0 + (xi[:, None].float() + dx.reshape(1, -1)) / size * (c1 - c0)
        sub_scenes = s.take(bi)  # each edge pixel as a scene of k*k rays
        origins, dirs = camera_rays(sub_scenes, prow, pcol, frame, hfov)
        jitter = torch.stack([dx * 2 - 1, dy * 2 - 1, (dx * 2 - 1) * (dy * 2 - 1)], -1).reshape(1, -1, 3)
        samples = shade(origins, dirs, sub_scenes, lights, albedo_fn, sky, jitter=jitter)  # [E,k*k,3]
        colour = colour.view(b, size, size, 3).index_put((bi, yi, xi), samples.mean(1)).view(b, -1, 3)
    return colour.view(b, size, size, 3).clamp(0, 1), mask


def _basis(s: Scenes) -> tuple[Tensor, Tensor, Tensor]:
    """Camera forward, right and up vectors [B,3]."""
    f = torch.nn.functional.normalize(s.target - s.camera, dim=-1)
    up = torch.tensor([0.0, 0.0, 1.0], device=f.device).expand_as(f)
    r = torch.nn.functional.normalize(torch.cross(f, up, dim=-1), dim=-1)
    return f, r, torch.cross(r, f, dim=-1)
