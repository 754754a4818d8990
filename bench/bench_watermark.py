"""Watermark cost per frame and robustness to re-encoding, measured in one process.

Cost is given against baselines run in the same process (these machines are noisy): marking a frame
against decoding it, and `embed_watermark` (decode, mark, encode) against the same transcode without the
mark. Robustness: the marked file is re-encoded with H.264 at CRF 18, 23, 28 and 33, and resized to half
then re-encoded at CRF 23 and 28 (the harshest rows show where the mark breaks); for each copy the table
gives the raw per-frame chip accuracy, the coded-bit accuracy after voting over sampled frames, the
payload-bit accuracy after Viterbi decoding, and whether the payload came back (CRC checked).

Optional baselines, when importable (`pip install --no-deps invisible-watermark PyWavelets pdqhash` into a
directory on PYTHONPATH is enough): invisible-watermark's DWT-DCT method with a 64-bit payload, decoded
per frame and majority-voted; and the PDQ perceptual hash as a fingerprint (Hamming distance out of 256,
<= 31 counts as a match).

    python bench/bench_watermark.py [--sizes 576x1024,160x288] [--seconds 2] [--no-baselines]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from devkit.sample_video import SampleClip, write_sample_video
from provenance.credentials import watermark as wm

PAYLOAD = bytes.fromhex("5eed0fc0ffee1234")
ATTACKS: list[tuple[str, int | None, float]] = [
    ("marked file", None, 1.0),
    ("H.264 CRF 18", 18, 1.0),
    ("H.264 CRF 23", 23, 1.0),
    ("H.264 CRF 28", 28, 1.0),
    ("H.264 CRF 33", 33, 1.0),
    ("half size + CRF 23", 23, 0.5),
    ("half size + CRF 28", 28, 0.5),
]


def transcode(
    source: Path, target: Path, crf: int, scale: float = 1.0, per_frame: Callable[[Any], Any] | None = None
) -> int:
    """Decode and re-encode the video stream with libx264 (preset medium), optionally resizing."""
    import av

    frames = 0
    with av.open(str(source)) as src, av.open(str(target), "w", format="mp4") as dst:
        stream = src.streams.video[0]
        stream.thread_type = "AUTO"
        width = int(stream.codec_context.width * scale) // 2 * 2
        height = int(stream.codec_context.height * scale) // 2 * 2
        out = dst.add_stream("libx264", rate=stream.average_rate)
        assert isinstance(out, av.VideoStream)
        out.width, out.height, out.pix_fmt = width, height, "yuv420p"
        out.options = {"crf": str(crf), "preset": "medium"}
        for frame in src.decode(stream):
            if scale != 1.0:
                frame = frame.reformat(width=width, height=height, format="yuv420p", interpolation="BILINEAR")
            if per_frame is not None:
                frame = per_frame(frame)
            dst.mux(out.encode(frame))
            frames += 1
        dst.mux(out.encode(None))
    return frames


def through_numpy(frame: Any) -> Any:
    """The same yuv420p -> ndarray -> frame round trip `embed_watermark` makes, without the mark."""
    import av

    fresh = av.VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p"), format="yuv420p")
    fresh.pts, fresh.time_base = frame.pts, frame.time_base
    return fresh


def decoded_frames(path: Path, fmt: str = "yuv420p") -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format=fmt) for frame in container.decode(video=0)]


def best_of(repeats: int, run: Callable[[], object]) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return min(timings)


def cost(clip: Path, work: Path) -> None:
    yuv = decoded_frames(clip)
    height = yuv[0].shape[0] * 2 // 3
    lumas = [frame[:height] for frame in yuv]
    n = len(lumas)
    decode_s = best_of(3, lambda: decoded_frames(clip))
    marker = wm.FrameMarker(PAYLOAD)
    mark_s = best_of(3, lambda: [marker.mark(luma) for luma in lumas])
    read_s = best_of(3, lambda: [wm.read_luma(luma) for luma in lumas])
    plain_s = best_of(2, lambda: transcode(clip, work / "plain.mp4", wm.DEFAULT_CONFIG.crf, per_frame=through_numpy))
    embed_s = best_of(2, lambda: wm.embed_watermark(clip, work / "marked.mp4", PAYLOAD))
    detect_s = best_of(3, lambda: wm.decode_watermark(work / "marked.mp4"))
    print(f"  frames: {n}")
    print(f"  decode (PyAV, baseline)        {1000 * decode_s / n:7.2f} ms/frame")
    print(f"  mark one luma plane            {1000 * mark_s / n:7.2f} ms/frame  ({mark_s / decode_s:5.2f}x decode)")
    print(f"  read one luma plane            {1000 * read_s / n:7.2f} ms/frame  ({read_s / decode_s:5.2f}x decode)")
    print(f"  transcode, no mark (baseline)  {1000 * plain_s / n:7.2f} ms/frame")
    ratio = embed_s / plain_s
    print(f"  embed_watermark (transcode)    {1000 * embed_s / n:7.2f} ms/frame  ({ratio:5.2f}x plain transcode)")
    growth = (work / "marked.mp4").stat().st_size / (work / "plain.mp4").stat().st_size
    print(f"  output size, marked / plain    {growth:7.2f}x  (H.264 CRF {wm.DEFAULT_CONFIG.crf}, preset medium)")
    print(
        f"  decode_watermark (whole file)  {1000 * detect_s:7.1f} ms for {wm.DEFAULT_CONFIG.sample_frames} sampled "
        f"frames ({detect_s / decode_s:5.2f}x decoding every frame)"
    )


def robustness(clip: Path, work: Path) -> None:
    report = wm.embed_watermark(clip, work / "marked.mp4", PAYLOAD)
    print(f"  luma PSNR of the mark: {report.psnr_db:.1f} dB (before the output encode, CRF {wm.DEFAULT_CONFIG.crf})")
    layout = wm._layout(wm.DEFAULT_CONFIG)
    chips = wm.coded_bits(PAYLOAD)[layout.bit_of]
    coded = wm.coded_bits(PAYLOAD)
    message = wm.message_bits(PAYLOAD)
    print(f"  {'copy':20} {'chip acc':>9} {'coded acc':>10} {'payload acc':>12} {'recovered':>10}")
    for name, crf, scale in ATTACKS:
        target = work / "marked.mp4"
        if crf is not None:
            target = work / f"attack-{crf}-{scale}.mp4"
            transcode(work / "marked.mp4", target, crf, scale)
        height = None
        per_frame = []
        for frame in decoded_frames(target):
            height = height or frame.shape[0] * 2 // 3
            per_frame.append(np.mean((wm.read_luma(frame[:height]) < 0) == chips))
        reading = wm.read_watermark(target)
        coded_acc = np.mean((reading.soft < 0) == coded)
        payload_acc = np.mean(reading.message == message)
        ok = "yes" if reading.payload == PAYLOAD else "NO"
        print(f"  {name:20} {np.mean(per_frame):9.3f} {coded_acc:10.3f} {payload_acc:12.3f} {ok:>10}")


def baselines(clip: Path, work: Path) -> None:
    try:
        import pdqhash
        from imwatermark import WatermarkDecoder, WatermarkEncoder
    except ImportError:
        print("  (invisible-watermark / pdqhash not importable: baselines skipped)")
        return
    import av

    with av.open(str(clip)) as container:
        context = container.streams.video[0].codec_context
        if min(context.width, context.height) < 256:
            print("  (invisible-watermark needs frames of at least 256x256: baselines skipped at this size)")
            return
    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", PAYLOAD)
    errors: list[float] = []
    embed_times: list[float] = []

    def mark(frame: Any) -> Any:
        bgr = frame.to_ndarray(format="bgr24")
        started = time.perf_counter()
        marked = encoder.encode(bgr, "dwtDct")
        embed_times.append(time.perf_counter() - started)
        errors.append(float(np.mean((marked.astype(float) - bgr) ** 2)))
        return av.VideoFrame.from_ndarray(marked, format="bgr24")

    transcode(clip, work / "dwtdct.mp4", wm.DEFAULT_CONFIG.crf, per_frame=mark)
    psnr = 10 * np.log10(255**2 / statistics.mean(errors))
    truth = np.unpackbits(np.frombuffer(PAYLOAD, np.uint8))
    decoder = WatermarkDecoder("bits", 64)
    print(f"  invisible-watermark dwtDct: embed {1000 * statistics.mean(embed_times):.1f} ms/frame, PSNR {psnr:.1f} dB")
    print(f"  {'copy':20} {'frame bit acc':>14} {'voted bit acc':>14} {'decode ms/frame':>16}")
    originals = decoded_frames(clip, "rgb24")
    pdq_rows = []
    for name, crf, scale in ATTACKS:
        target = work / "dwtdct.mp4"
        if crf is not None:
            target = work / f"dwtdct-{crf}-{scale}.mp4"
            transcode(work / "dwtdct.mp4", target, crf, scale)
        frames = decoded_frames(target, "bgr24")
        started = time.perf_counter()
        bits = np.array([np.array(decoder.decode(f, "dwtDct"), dtype=np.uint8) for f in frames])
        decode_ms = 1000 * (time.perf_counter() - started) / len(frames)
        voted = (bits.mean(axis=0) > 0.5).astype(np.uint8)
        print(f"  {name:20} {np.mean(bits == truth):14.3f} {np.mean(voted == truth):14.3f} {decode_ms:16.1f}")
        if crf is not None:
            copy = decoded_frames(target, "rgb24")  # PDQ resizes internally: any frame size compares
            started = time.perf_counter()
            distances = [
                int(np.count_nonzero(pdqhash.compute(a)[0] != pdqhash.compute(b)[0]))
                for a, b in zip(originals, copy, strict=False)
            ]
            pdq_ms = 1000 * (time.perf_counter() - started) / (2 * len(distances))
            pdq_rows.append((name, statistics.median(distances), max(distances), pdq_ms))
    print("  PDQ hash, unmarked clip vs attacked copy (median / max Hamming distance per frame):")
    for name, median, worst, ms in pdq_rows:
        print(f"    {name:20} {median:6.0f} / {worst:3d} of 256   ({ms:.1f} ms per hash)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="576x1024,160x288", help="comma-separated WIDTHxHEIGHT list")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--no-baselines", action="store_true")
    args = parser.parse_args()
    config = wm.DEFAULT_CONFIG
    print(
        f"method {wm.ALG}: grid {config.grid_short}x{config.grid_long} cells, {len(config.coefficients)} DCT "
        f"coefficients per cell, QIM step {config.step}, {wm.PAYLOAD_BITS}-bit payload + CRC-{wm.CRC_BITS}, "
        f"rate-1/2 K=7 convolutional code ({wm.CODED_BITS} coded bits on "
        f"{config.grid_short * config.grid_long * len(config.coefficients)} chips per frame)"
    )
    with tempfile.TemporaryDirectory(prefix="bench-watermark-") as scratch:
        work = Path(scratch)
        for size in args.sizes.split(","):
            width, height = (int(v) for v in size.lower().split("x"))
            clip = write_sample_video(
                work / f"clip-{width}x{height}.mp4", SampleClip(width=width, height=height, seconds=args.seconds)
            )
            print(f"\n== {width}x{height}, {args.seconds:g} s at 24 fps ==")
            print("cost:")
            cost(clip, work)
            print("robustness (this method):")
            robustness(clip, work)
            if not args.no_baselines:
                print("baselines:")
                baselines(clip, work)


if __name__ == "__main__":
    main()
