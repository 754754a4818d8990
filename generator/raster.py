"""Drawing the reference scene with torch tensor ops, a chunk of frames at a time, on any device.

Frames stay uint8; each layer is blended in float over small patches only: every object is drawn in a
fixed-size patch that follows it from frame to frame (gathered and scattered back with index tensors, so a
whole chunk of frames is one batched op per object). Splatter drops are splatted with `scatter_reduce`
(max), which gives the same result in any order, so the picture stays deterministic on CUDA too. Stains
stay where drops land, in a layer that persists from chunk to chunk.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from generator.cameos import CameoCompositor, CameoLayer
from generator.physics import Motion
from generator.scene_plan import ScenePlan
from generator.text import TextOverlay

if TYPE_CHECKING:
    import torch

_LIGHT = (-0.45, -0.6, 0.66)
STAIN_RGB = (0.42, 0.02, 0.03)
STAIN_ALPHA = 0.88
DROP_RGB = (0.72, 0.03, 0.05)
CHUNK_PIXELS = 1 << 24
"""Frames per chunk are chosen so a chunk holds about this many pixels (16 frames at 576x1024)."""


def chunk_frames(width: int, height: int) -> int:
    return max(1, min(16, CHUNK_PIXELS // (width * height)))


class ScenePainter:
    def __init__(
        self,
        plan: ScenePlan,
        motion: Motion,
        width: int,
        height: int,
        fps: int,
        caption: TextOverlay,
        cameos: list[CameoLayer],
        device: torch.device,
    ) -> None:
        import torch

        self.torch = torch
        self.plan, self.motion = plan, motion
        self.width, self.height, self.fps = width, height, fps
        self.device = device
        self.scale = float(min(width, height))
        self.floor_px = plan.world.floor_fraction * plan.world_height * self.scale
        self.background = self._background()
        self.caption = caption
        self.caption_text = torch.from_numpy(caption.text).to(device)[..., None]
        self.caption_plate = torch.from_numpy(caption.plate).to(device)[..., None]
        self.cameos = CameoCompositor(cameos, device)
        light = torch.tensor(_LIGHT, device=device)
        self.light = light / light.norm()
        half = self.light + torch.tensor((0.0, 0.0, 1.0), device=device)
        self.half = half / half.norm()
        self.stains = torch.zeros(height * width, dtype=torch.float32, device=device)
        self.stained = torch.zeros(0, dtype=torch.long, device=device)
        self.particles: tuple[torch.Tensor, ...] | None = None
        if motion.particles is not None and len(motion.particles):
            p = motion.particles

            def t(a: np.ndarray) -> torch.Tensor:
                return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=torch.float32)

            self.particles = (t(p.spawn_s), t(p.origin), t(p.velocity), t(p.land_s), t(p.land_point), t(p.size))
            self.spawn_s, self.land_s = p.spawn_s, p.land_s
            self.landed = np.zeros(len(p), dtype=bool)

    def _rgb(self, colour: tuple[float, float, float]) -> torch.Tensor:
        return self.torch.tensor(colour, dtype=self.torch.float32, device=self.device)

    def _background(self) -> torch.Tensor:
        torch = self.torch
        plan, h, w = self.plan, self.height, self.width
        y = (torch.arange(h, device=self.device, dtype=torch.float32) + 0.5)[:, None, None]
        x = (torch.arange(w, device=self.device, dtype=torch.float32) + 0.5)[None, :, None]
        u = (y / self.floor_px).clamp(0, 1) ** 0.8
        sky = self._rgb(plan.sky_top) * (1 - u) + self._rgb(plan.sky_bottom) * u
        depth = ((y - self.floor_px) / max(1.0, h - self.floor_px)).clamp(0, 1)
        floor = self._rgb(plan.floor) * (1.15 - 0.45 * depth)
        image = torch.where(y < self.floor_px, sky, floor)
        edge = (y - self.floor_px).abs() < max(1.0, h / 512)
        image = torch.where(edge, image * 0.6, image)
        vignette = 1.0 - 0.18 * ((x / w - 0.5) * 2) ** 2
        return (image * vignette * 255).round().clamp(0, 255).to(torch.uint8).expand(h, w, 3).contiguous()

    def _patch_grid(
        self, cx: torch.Tensor, cy: torch.Tensor, half_w: int, half_h: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Index tensors of a (2*half_h+1, 2*half_w+1) patch around each frame's centre, kept in the frame,
        and the pixel-centre offsets from the true centre."""
        torch = self.torch
        count = cx.shape[0]
        size_w = min(2 * half_w + 1, self.width)
        size_h = min(2 * half_h + 1, self.height)
        x0 = (cx.round().long() - half_w).clamp(0, self.width - size_w)
        y0 = (cy.round().long() - half_h).clamp(0, self.height - size_h)
        ti = torch.arange(count, device=self.device)[:, None, None]
        yi = y0[:, None, None] + torch.arange(size_h, device=self.device)[None, :, None]
        xi = x0[:, None, None] + torch.arange(size_w, device=self.device)[None, None, :]
        dx = xi.float() + 0.5 - cx[:, None, None]
        dy = yi.float() + 0.5 - cy[:, None, None]
        return ti, yi, xi, dx, dy

    def _blend_patch(
        self, frames: torch.Tensor, index: tuple[torch.Tensor, ...], paint: torch.Tensor, alpha: torch.Tensor
    ) -> None:
        patch = frames[index].float()
        out = patch * (1 - alpha) + paint * (255.0 * alpha)
        frames[index] = out.round_().clamp_(0, 255).to(self.torch.uint8)

    def _shadows(self, frames: torch.Tensor, pos: torch.Tensor) -> None:
        world_floor = self.plan.world.floor_fraction * self.plan.world_height
        for index, obj in enumerate(self.plan.objects):
            lift = (world_floor - obj.size - pos[:, index, 1]).clamp(0, 0.85)
            rx = self.scale * obj.size * (1.15 - 0.45 * lift)
            ry = 0.28 * rx
            dark = 0.45 * (1 - lift)
            cx = pos[:, index, 0] * self.scale
            cy = self.floor_px + 0.35 * ry
            half_w = math.ceil(1.15 * self.scale * obj.size) + 1
            ti, yi, xi, dx, dy = self._patch_grid(cx, cy, half_w, math.ceil(0.33 * half_w) + 1)
            d = (dx / rx[:, None, None]) ** 2 + (dy / ry[:, None, None]) ** 2
            shade = (dark[:, None, None] * (1.0 - d).clamp(0, 1))[..., None]
            patch = frames[ti, yi, xi].float()
            frames[ti, yi, xi] = (patch * (1 - shade)).round_().to(self.torch.uint8)

    def _objects(self, frames: torch.Tensor, pos: torch.Tensor) -> None:
        torch = self.torch
        light, half = self.light, self.half
        for index, obj in enumerate(self.plan.objects):
            r = obj.size * self.scale
            reach = math.ceil(r) + 2
            ti, yi, xi, dx, dy = self._patch_grid(
                pos[:, index, 0] * self.scale, pos[:, index, 1] * self.scale, reach, reach
            )
            colour = self._rgb(obj.colour)
            if obj.kind == "ball":
                dist = torch.sqrt(dx * dx + dy * dy)
                cover = (r - dist + 0.5).clamp(0, 1)
                nx, ny = dx / r, dy / r
                nz = (1 - nx * nx - ny * ny).clamp(min=0).sqrt()
                lambert = (nx * light[0] + ny * light[1] + nz * light[2]).clamp(min=0)
                spec = (nx * half[0] + ny * half[1] + nz * half[2]).clamp(min=0) ** 40
                paint = colour * (0.22 + 0.78 * lambert)[..., None] + 0.55 * spec[..., None]
            else:
                inset = torch.minimum(r - dx.abs(), r - dy.abs())
                cover = (inset + 0.5).clamp(0, 1)
                rim = (inset / (0.18 * r)).clamp(0, 1)
                tilt = 0.85 + 0.15 * (-(dx + dy) / (2 * r)).clamp(-1, 1)
                paint = colour * (tilt * (0.55 + 0.45 * rim))[..., None]
            self._blend_patch(frames, (ti, yi, xi), paint.clamp(0, 1), cover[..., None])

    def _splat(
        self, target: torch.Tensor, plane: int, centres: torch.Tensor, rx: torch.Tensor, ry: torch.Tensor
    ) -> torch.Tensor:
        """Max-blend soft ellipses into a flat alpha buffer at plane `plane`; returns the touched indices."""
        torch = self.torch
        reach = math.ceil(max(rx.max().item(), ry.max().item())) + 1
        offsets = torch.arange(-reach, reach + 1, device=self.device)
        oy, ox = torch.meshgrid(offsets, offsets, indexing="ij")
        xs = centres[:, 0].round().long()[:, None] + ox.reshape(1, -1)
        ys = centres[:, 1].round().long()[:, None] + oy.reshape(1, -1)
        fx = (xs.float() + 0.5 - centres[:, 0:1]) / rx[:, None]
        fy = (ys.float() + 0.5 - centres[:, 1:2]) / ry[:, None]
        cover = (1.0 - (fx * fx + fy * fy)).mul(2.5).clamp(0, 1)
        inside = (cover > 0) & (xs >= 0) & (xs < self.width) & (ys >= 0) & (ys < self.height)
        flat = (ys * self.width + xs)[inside] + plane * self.width * self.height
        target.scatter_reduce_(0, flat, cover[inside], reduce="amax")
        return flat

    def _blend_flat(self, frames: torch.Tensor, flat: torch.Tensor, alpha: torch.Tensor, rgb: torch.Tensor) -> None:
        pixels = frames.view(-1, 3)
        a = alpha[:, None]
        out = pixels[flat].float() * (1 - a) + (rgb * 255.0) * a
        pixels[flat] = out.round_().clamp_(0, 255).to(self.torch.uint8)

    def _splatter(self, frames: torch.Tensor, first: int) -> None:
        if self.particles is None:
            return
        torch = self.torch
        spawn, origin, velocity, land_s, land_point, size = self.particles
        g = self.plan.world.gravity
        count = frames.shape[0]
        plane = self.width * self.height
        times_np = np.arange(first, first + count) / self.fps
        stain_rgb = self._rgb(STAIN_RGB)
        for j in range(count):
            fresh = np.flatnonzero(~self.landed & (self.land_s <= times_np[j]))
            if fresh.size:
                self.landed[fresh] = True
                idx = torch.from_numpy(fresh).to(self.device)
                rx, ry = size[idx] * self.scale * 2.2, size[idx] * self.scale * 0.9
                touched = self._splat(
                    self.stains, 0, land_point[idx] * self.scale, rx.clamp(min=1.0), ry.clamp(min=0.8)
                )
                self.stained = torch.unique(torch.cat([self.stained, touched]))
            if self.stained.numel():
                self._blend_flat(frames, self.stained + j * plane, self.stains[self.stained] * STAIN_ALPHA, stain_rgb)
        live = np.flatnonzero((self.spawn_s <= times_np[-1]) & (self.land_s > times_np[0]))
        if live.size == 0:
            return
        idx = torch.from_numpy(live).to(self.device)
        times = torch.from_numpy(times_np).to(device=self.device, dtype=torch.float32)
        tau = times[:, None] - spawn[idx][None, :]
        flying = (tau >= 0) & (times[:, None] < land_s[idx][None, :])
        tau = tau.clamp(min=0)
        px = (origin[idx, 0][None, :] + velocity[idx, 0][None, :] * tau) * self.scale
        py = (origin[idx, 1][None, :] + velocity[idx, 1][None, :] * tau + 0.5 * g * tau * tau) * self.scale
        radius = (size[idx] * self.scale).clamp(min=0.8)
        drops = torch.zeros(count * plane, dtype=torch.float32, device=self.device)
        touched_all = []
        for j in range(count):
            keep = flying[j]
            if bool(keep.any()):
                centres = torch.stack([px[j][keep], py[j][keep]], dim=1)
                touched_all.append(self._splat(drops, j, centres, radius[keep], radius[keep]))
        if touched_all:
            touched = torch.unique(torch.cat(touched_all))
            self._blend_flat(frames, touched, drops[touched], self._rgb(DROP_RGB))

    def _caption(self, frames: torch.Tensor) -> None:
        cap = self.caption
        region = frames[:, cap.y : cap.y + cap.height, cap.x : cap.x + cap.width, :]
        out = region.float() * (1 - 0.45 * self.caption_plate)
        out = out * (1 - self.caption_text) + 247.0 * self.caption_text
        region.copy_(out.round_().clamp_(0, 255).to(self.torch.uint8))

    def paint(self, first: int, count: int) -> torch.Tensor:
        """Frames first..first+count-1 as uint8 (count, H, W, 3) on the device; chunks must come in order."""
        torch = self.torch
        frames = self.background.expand(count, -1, -1, -1).clone()
        pos = torch.from_numpy(self.motion.positions[first : first + count]).to(self.device, torch.float32)
        if pos.shape[1]:
            self._shadows(frames, pos)
            self._objects(frames, pos)
        self._splatter(frames, first)
        self.cameos.apply(frames, first)
        self._caption(frames)
        return frames

    def chunks(self, frame_count: int) -> Iterator[np.ndarray]:
        step = chunk_frames(self.width, self.height)
        for first in range(0, frame_count, step):
            count = min(step, frame_count - first)
            yield self.paint(first, count).cpu().numpy()
