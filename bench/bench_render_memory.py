"""Peak memory of a render as the clip gets longer: frames stream to the encoder, so it should stay flat.

Each render runs in a fresh process (peak RSS is per process) with the reference backend on the CPU; the
figure is the peak of the longer clip over the peak of the shorter one (1.00 = memory does not grow with
length), with the size of one raw frame for scale.

    python bench/bench_render_memory.py [--width 1080 --height 1920] [--fps 24] [--short 2 --long 8]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def render_once(width: int, height: int, fps: int, seconds: float) -> None:
    """Child process: render one clip, print the peak RSS (MiB)."""
    from generator.pipeline import render_to_blob
    from generator.reference import ReferenceBackend
    from generator.spec import RenderSpec
    from kernel.blobstore import BlobStore

    spec = RenderSpec(
        "three red balls and a blue box bouncing at sunset",
        seed=1,
        duration_s=seconds,
        fps=fps,
        width=width,
        height=height,
    )
    with tempfile.TemporaryDirectory() as tmp:
        render_to_blob(spec, BlobStore(Path(tmp)), ReferenceBackend(device="cpu"))
    print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def peak_mib(width: int, height: int, fps: int, seconds: float) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(width), str(height), str(fps), str(seconds)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["peak_mib"])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        width, height, fps, seconds = sys.argv[2:6]
        render_once(int(width), int(height), int(fps), float(seconds))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1080)
    parser.add_argument("--height", type=int, default=1920)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--short", type=float, default=2.0)
    parser.add_argument("--long", type=float, default=8.0)
    args = parser.parse_args()
    short = peak_mib(args.width, args.height, args.fps, args.short)
    long = peak_mib(args.width, args.height, args.fps, args.long)
    frame_mib = args.width * args.height * 3 / 2**20
    frames = round(args.long * args.fps)
    print(f"{args.width}x{args.height} at {args.fps} fps; one raw frame is {frame_mib:.1f} MiB")
    print(f"peak RSS, {args.short:g} s clip: {short:.0f} MiB")
    held = frames * frame_mib
    print(f"peak RSS, {args.long:g} s clip: {long:.0f} MiB (holding its {frames} frames would take {held:.0f} MiB)")
    print(f"long / short: {long / short:.2f}")


if __name__ == "__main__":
    main()
