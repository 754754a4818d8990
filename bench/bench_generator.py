"""Render + encode throughput of the reference generator, against encoding alone.

The floor is encoding pre-made frames (already rendered and watermarked, held in memory) with the same
encoder settings and soundtrack: what the pipeline would cost if drawing were free. Each row is timed in
the same process, interleaved over several rounds (the best round counts), and reported as frames per
second and as a ratio to the floor, so the figures can be compared between noisy machines.

    python bench/bench_generator.py [--rounds 3] [--seconds 4] [--width 576 --height 1024] [--device cpu]

On a CPU shared with other busy processes, run it (and the render workers) with OMP_WAIT_POLICY=passive:
torch's OpenMP threads otherwise spin while waiting, and the many small drawing ops then run several times
slower than on one thread.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from generator.encode import EncoderConfig, encode_mp4
from generator.pipeline import render_to_blob
from generator.reference import ReferenceBackend
from generator.spec import RenderSpec
from generator.watermark import apply_watermark
from kernel.blobstore import BlobStore

PLAIN = "three red balls and a blue box bouncing at sunset"
BUSY = "six balls and three boxes, blood and gore, at night"


def _face(variant: int) -> np.ndarray:
    yy, xx = np.mgrid[0:256, 0:256]
    image = np.zeros((256, 256, 3), np.uint8)
    image[..., 0] = (xx + variant * 60) % 256
    image[..., 1] = yy
    image[..., 2] = ((xx // 32 + yy // 32) % 2) * 200
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--width", type=int, default=576)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    backend = ReferenceBackend(device=args.device)
    encoder = EncoderConfig()
    size = {"duration_s": args.seconds, "fps": args.fps, "width": args.width, "height": args.height}
    plain = RenderSpec(PLAIN, seed=1, **size)
    busy = RenderSpec(BUSY, seed=1, cameos={"alice": _face(0), "bob": _face(1)}, **size)
    frames_total = plain.frame_count

    premade = backend.render(plain)
    frames = apply_watermark(premade.collect_frames(), 0, plain.fps)
    audio = premade.audio

    work = Path(tempfile.mkdtemp(prefix="bench-generator-"))
    store = BlobStore(work / "blobs")

    def encode_only() -> None:
        encode_mp4(
            work / "floor.mp4",
            width=plain.width,
            height=plain.height,
            fps=plain.fps,
            frame_count=frames_total,
            chunks=(frames[i : i + 16] for i in range(0, frames_total, 16)),
            audio=audio,
            config=encoder,
        )

    def render_only(spec: RenderSpec) -> Callable[[], None]:
        def run() -> None:
            video = backend.render(spec)
            first = 0
            for chunk in video.frames:
                apply_watermark(chunk, first, spec.fps)
                first += chunk.shape[0]

        return run

    def full(spec: RenderSpec) -> Callable[[], None]:
        def run() -> None:
            render_to_blob(spec, store, backend, encoder=encoder)

        return run

    rows: list[tuple[str, Callable[[], None]]] = [
        ("encode pre-made frames (floor)", encode_only),
        ("render only, plain prompt", render_only(plain)),
        ("render only, splatter + 2 cameos", render_only(busy)),
        ("render + encode + store, plain", full(plain)),
        ("render + encode + store, splatter + 2 cameos", full(busy)),
    ]
    best = {name: float("inf") for name, _ in rows}
    for _ in range(args.rounds):
        for name, run in rows:
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)

    floor = best[rows[0][0]]
    print(
        f"{args.width}x{args.height}, {frames_total} frames ({args.seconds:g} s at {args.fps} fps), "
        f"device {backend.device}, torch threads {torch.get_num_threads()}, "
        f"libx264 preset {encoder.preset} crf {encoder.crf} threads {encoder.threads}, best of {args.rounds}"
    )
    print(f"{'stage':<46} {'seconds':>8} {'frames/s':>9} {'vs floor':>9}")
    for name, _ in rows:
        seconds = best[name]
        print(f"{name:<46} {seconds:>8.2f} {frames_total / seconds:>9.1f} {floor / seconds:>8.2f}x")


if __name__ == "__main__":
    main()
