"""One offscreen MuJoCo GL context per process, reused for every scene (MuJoCo's public low-level API).

MUJOCO_GL selects the backend before mujoco is imported: `osmesa` (software, the default here; Debian
package libosmesa6) or `egl` (GPU). A missing backend raises an error saying what to install.
"""
from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])


class RenderBackendMissing(RuntimeError):
    """MuJoCo or its OpenGL backend is not installed."""


def import_mujoco():
    try:
        import mujoco
        return mujoco
    except ImportError as err:
        raise RenderBackendMissing("MuJoCo is missing: pip install mujoco (the Makefile does)") from err


class OffscreenRenderer:
    """RGB and geom-id segmentation of any model sharing the template's assets (textures, materials)."""

    def __init__(self, template, width: int, height: int, max_geom: int = 500):
        mujoco = self.mj = import_mujoco()
        try:
            self.gl = mujoco.GLContext(width, height)
            self.gl.make_current()
        except Exception as err:
            raise RenderBackendMissing(
                f"no OpenGL for MUJOCO_GL={os.environ['MUJOCO_GL']} ({err}); install Debian's libosmesa6 "
                "(`apt-get install libosmesa6`, the Makefile tries) or set MUJOCO_GL=egl on a GPU machine") from err
        self.width, self.height = width, height
        template.vis.global_.offwidth, template.vis.global_.offheight = width, height  # not 640x480
        template.vis.quality.offsamples = 0  # no MSAA: software GL pays per sample; images are small
        template.vis.quality.shadowsize = 512  # a 64 px image needs no 4096^2 shadow map
        self.context = mujoco.MjrContext(template, mujoco.mjtFontScale.mjFONTSCALE_100)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self.context)
        self.scene = mujoco.MjvScene(template, maxgeom=max_geom)
        self.option, self.camera = mujoco.MjvOption(), mujoco.MjvCamera()
        self.viewport = mujoco.MjrRect(0, 0, width, height)

    def render(self, model, data, lookat, distance: float, azimuth: float, elevation: float):
        """-> image uint8 [H,W,3], geom id int [H,W] (-1 where no geom)."""
        mj, cam = self.mj, self.camera
        cam.lookat[:], cam.distance, cam.azimuth, cam.elevation = lookat, distance, azimuth, elevation
        self.gl.make_current()
        out = []
        for segment in (False, True):
            flags = self.scene.flags
            flags[mj.mjtRndFlag.mjRND_SEGMENT] = flags[mj.mjtRndFlag.mjRND_IDCOLOR] = segment
            for effect in (mj.mjtRndFlag.mjRND_SHADOW, mj.mjtRndFlag.mjRND_REFLECTION, mj.mjtRndFlag.mjRND_SKYBOX):
                flags[effect] = not segment  # the id pass needs no lighting effects
            mj.mjv_updateScene(model, data, self.option, None, cam, mj.mjtCatBit.mjCAT_ALL, self.scene)
            mj.mjr_render(self.viewport, self.scene, self.context)
            rgb = np.empty((self.height, self.width, 3), np.uint8)
            mj.mjr_readPixels(rgb, None, self.viewport, self.context)
            out.append(np.flipud(rgb))
        seg = out[1].astype(np.int64)
        ids = seg[..., 0] + (seg[..., 1] << 8) + (seg[..., 2] << 16) - 1  # segid + 1 encoded as colour
        geom = np.full(ids.shape, -1)
        valid = ids >= 0
        scene_geoms = np.array([self.scene.geoms[i].objid for i in range(self.scene.ngeom)])
        types = np.array([self.scene.geoms[i].objtype for i in range(self.scene.ngeom)])
        is_geom = types == int(mj.mjtObj.mjOBJ_GEOM)
        lookup = np.where(is_geom, scene_geoms, -1)
        geom[valid] = lookup[np.clip(ids[valid], 0, len(lookup) - 1)]
        return out[0], geom

    def close(self) -> None:
        self.context.free()
        self.gl.free()
