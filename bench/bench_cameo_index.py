"""Moderation time of one clip as the platform's cameos grow: 10, 1,000 and 100,000 registered likenesses.

The worker keeps every cameo's embedding in an index (`moderation.likeness_index`), filled once; a job then
compares each face with all of them in one matrix product. Measured in one process with the development
models: the same clip (a face on screen), moderated with an index of N cameos (random unit embeddings plus
the cameo of the face), against the same clip with no index at all (the floor). Before the index, each job
decoded and embedded every cameo's reference image: that cost is shown too, per cameo, for scale.

    python -m bench.bench_cameo_index [--sizes 10 1000 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.bench_moderation import write_clip
from devkit.clip import development_backbone_config, synthesize_face
from moderation.config import ModerationContext, ModeratorConfig
from moderation.likeness import CameoReference
from moderation.likeness_index import LikenessIndex
from moderation.moderator import load_moderator


def best_of(runs: int, call: object) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1000, 100_000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    config = ModeratorConfig(mode="development", backbone=development_backbone_config())
    moderator = load_moderator(config)
    scorer = moderator.likeness
    dim = scorer.backbone.embed_dim
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_clip(Path(tmp) / "clip.mp4", seconds=4)
        floor = best_of(args.runs, lambda: moderator.moderate_video(clip, ModerationContext(config=config)))
        print(f"{dim}-dimensional embeddings; one 4 s 720p clip with a face on screen")
        print(f"no index (floor): {floor * 1000:.0f} ms")
        face = scorer.reference_embeddings("in-video", CameoReference.from_image(synthesize_face(3)))[0]
        rng = np.random.default_rng(0)
        for size in args.sizes:
            index = LikenessIndex(dim, scorer.backbone.model_hash)
            strangers = rng.normal(size=(size - 1, dim)).astype(np.float32)
            added = {f"c{n}": ("someone", strangers[n]) for n in range(size - 1)} | {"in-video": ("owner", face)}
            filled = best_of(1, lambda index=index, added=added: index.update(added, set()))
            context = ModerationContext(config=config, index=index)
            seconds = best_of(args.runs, lambda context=context: moderator.moderate_video(clip, context))
            decision = moderator.moderate_video(clip, context).to_payload()
            found = any(c.label == "cameo:in-video" for c in decision.classifiers)
            print(
                f"{size:>7,} cameos: {seconds * 1000:.0f} ms ({seconds / floor:.2f}x the floor); "
                f"index filled once in {filled * 1000:.0f} ms; the cameo on screen found: {found}"
            )
        from provenance.stages import decode_image, encode_png

        pngs = [encode_png(synthesize_face(n, 256)) for n in range(args.runs)]
        per_cameo = min(
            best_of(1, lambda png=png: scorer.face_embeddings(decode_image(png))) for png in pngs
        )  # decode + detect + embed, as each job did for every cameo before (decryption not counted)
        print(
            f"one reference image decoded and embedded (what each job paid per cameo before): {per_cameo * 1000:.1f} ms"
        )
        print(f"  so 100,000 cameos cost each job about {per_cameo * 100_000:.0f} s before the index")


if __name__ == "__main__":
    main()
