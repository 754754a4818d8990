"""C2PA signing and verification cost per MB, against hashing the same file in the same process.

Hashing the file with sha256 is the floor: signing must at least hash every byte for the hard binding,
and so must verification. The files are real H.264 MP4s of noisy frames (noise does not compress, so a few
seconds reach the target size) with an AAC track. Signing here is the C2PA step alone
(`sign_watermarked_video`: manifest, thumbnail, signature, embedding); `--full` adds `sign_video`, which
first re-encodes the frames to embed the watermark and costs what an encode costs (bench_watermark.py).

    python bench/bench_credentials.py [--sizes 1,20,100] [--repeats 3] [--full]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

from devkit.sample_video import SampleClip, write_sample_video
from kernel.blobstore import sha256_file
from provenance.credentials.manifest import ClassifierRecord, ManifestInputs
from provenance.credentials.pki import SigningIdentity, create_development_pki
from provenance.credentials.signing import sign_video, sign_watermarked_video
from provenance.credentials.trust import TrustConfig
from provenance.credentials.verify import verify_file

MB = 1 << 20


def noisy_clip(path: Path, target_mb: float) -> Path:
    """An MP4 of about `target_mb`: measure the bytes per second of noisy frames, then encode enough."""
    base = SampleClip(width=640, height=360, seconds=1.0, fps=24, noise=40.0, crf=10, preset="ultrafast")
    probe = write_sample_video(path, base)
    per_second = probe.stat().st_size / base.seconds
    seconds = max(0.1, target_mb * MB / per_second)
    return write_sample_video(path, dataclasses.replace(base, seconds=seconds))


def best_of(repeats: int, run: Callable[[], object]) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return min(timings)


def inputs() -> ManifestInputs:
    return ManifestInputs(
        video_id=uuid4(),
        generator_name="bench-generator",
        generator_version="1",
        event_ids=("e1", "e2", "e3"),
        moderation_verdict="allow",
        classifiers=(ClassifierRecord("policy", "1", "00" * 32),),
    )


def measure(
    work: Path, size_mb: float, identity: SigningIdentity, trust: TrustConfig, repeats: int, full: bool
) -> None:
    clip = noisy_clip(work / f"clip-{size_mb:g}MB.mp4", size_mb)
    signed = work / "signed.mp4"
    mb = clip.stat().st_size / MB
    hash_s = best_of(repeats, lambda: sha256_file(clip))
    sign_s = best_of(repeats, lambda: sign_watermarked_video(clip, signed, inputs(), identity))
    report = verify_file(signed, trust)
    assert report.state == "Trusted", report.reason
    verify_s = best_of(repeats, lambda: verify_file(signed, trust))
    row = (
        f"{mb:7.1f}M {1000 * hash_s / mb:9.2f} {1000 * sign_s / mb:9.2f} {1000 * verify_s / mb:9.2f} "
        f"{sign_s / hash_s:9.2f} {verify_s / hash_s:11.2f}"
    )
    if full:
        full_s = best_of(1, lambda: sign_video(clip, work / "full.mp4", inputs(), identity))
        row += f" {1000 * full_s / mb:11.1f} {full_s / hash_s:7.0f}"
    print(row)
    print(
        f"{'':9}absolute: sha256 {1000 * hash_s:.1f} ms, sign {1000 * sign_s:.1f} ms, verify {1000 * verify_s:.1f} ms"
    )
    clip.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,20,100", help="comma-separated file sizes in MB")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="also time sign_video (watermark + sign)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-credentials-") as scratch:
        work = Path(scratch)
        pki = create_development_pki(work / "pki")
        header = f"{'size':>8} {'sha256':>9} {'sign':>9} {'verify':>9} {'sign/sha':>9} {'verify/sha':>11}"
        if args.full:
            header += f" {'sign_video':>11} {'/sha':>7}"
        print(f"ms per MB (best of {args.repeats} runs); ratios against sha256 of the same file")
        print(header)
        for size in args.sizes.split(","):
            measure(work, float(size), pki.identity(), pki.trust(), args.repeats, args.full)


if __name__ == "__main__":
    main()
