"""`provenance demo`: the whole system on the embedded default, on the CPU, in one run.

People and friendships, cameos from generated faces, consent granted and refused, videos rendered,
moderated, watermarked, signed and published; one blocked for policy and one for a likeness used without
consent; a remix of a remix; a revocation and its cascade; a stripped file resolved through its watermark;
a tampered file; and the trace of one clip from the file back to its origin. Everything it makes stays in
the output directory, where the videos can be opened.

The moderation models here are development models (a tiny CLIP with random weights and a head trained in
this run on frames the reference renderer draws): every decision they make says so.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from kernel.blobstore import export
from kernel.errors import ProvenanceError
from provenance.bootstrap import System
from provenance.cli.render import render_trace, render_verification
from provenance.config import Settings

if TYPE_CHECKING:
    from generator import RenderSpec
    from moderation.sampling import SamplingConfig

MARKER = ".provenance-demo"
SIZE = {"duration_s": 3.0, "fps": 12, "width": 288, "height": 512}
TRAINING_SIZE: dict[str, Any] = {"duration_s": 3.0, "fps": 6, "width": 144, "height": 256}
# The prompts of the story; the development violence head is trained on these scenes at other seeds.
STORY = {
    "with_friend": "two red balls bounce with my friend",
    "plain": "a blue box falls on a green floor",
    "gore": "three balls",
    "remix": "the same scene at sunrise, yellow balls",
    "remix_of_remix": "now with five balls",
    "likeness": "me dancing with a ball",
}


class Demo:
    def __init__(self, out: Path, say: Callable[[str], None] = print) -> None:
        self.out = out
        self.say = say
        self.step_no = 0
        self.started = time.perf_counter()

    def step(self, title: str) -> None:
        self.step_no += 1
        self.say(f"\n[{self.step_no:>2}] {title}  (+{time.perf_counter() - self.started:.0f} s)")

    def note(self, text: str) -> None:
        self.say(f"     {text}")

    def run(self) -> int:
        if self.out.exists():
            if not (self.out / MARKER).exists():
                raise ProvenanceError(f"{self.out} exists and is not a demo directory: choose another --out")
            shutil.rmtree(self.out)
        self.out.mkdir(parents=True)
        (self.out / MARKER).write_text("made by provenance demo\n")
        from dataclasses import replace

        from devkit.timestamp_authority import TimestampAuthority, serving
        from provenance.credentials.pki import create_development_pki

        settings = Settings(home=self.out / "data", event_store="sqlite", mode="development")
        create_development_pki(settings.pki_directory)
        # Every signature gets an RFC 3161 time-stamp, so the demo's files outlive their signing certificate.
        with serving(TimestampAuthority.from_directory(settings.pki_directory)) as authority:
            system = System(replace(settings, tsa_url=authority.url))
            try:
                return self._run(system)
            finally:
                system.close()

    # --- the story -------------------------------------------------------------------------------------

    def _run(self, system: System) -> int:
        app = system.app
        self.step("Setting up: development signing PKI, tiny development CLIP, a violence head trained here")
        self.note(f"PKI (DEVELOPMENT ONLY) in {system.settings.pki_directory}")
        self.note(f"a DEVELOPMENT RFC 3161 time-stamp authority at {system.settings.tsa_url}")
        policy = self._train_policy(system)

        self.step("People and who follows whom")
        people = {h: app.register_person(h, roles=["member"]) for h in ("alice", "bob", "carol", "mallory")}
        people["tess"] = app.register_person("tess", "Tess (trust and safety)", ["member", "trust_and_safety"])
        app.follow(people["alice"], people["bob"])
        app.follow(people["bob"], people["alice"])
        app.follow(people["carol"], people["alice"])
        self.note("alice and bob follow each other (mutuals); carol follows alice, alice does not follow back")

        self.step("Cameos: likenesses registered from face images (stored encrypted, one key each)")
        from devkit.clip import synthesize_face
        from provenance.stages import encode_png

        faces = self.out / "faces"
        faces.mkdir()
        images = {"alice": synthesize_face(1), "bob": synthesize_face(2)}
        for name, image in images.items():
            (faces / f"{name}.png").write_bytes(encode_png(image))
        alice_cameo = app.register_cameo(people["alice"], encode_png(images["alice"]))
        bob_cameo = app.register_cameo(people["bob"], encode_png(images["bob"]))
        self.note(f"alice's cameo {alice_cameo}, bob's cameo {bob_cameo}; face images in {faces}")

        self.step("Consent")
        mutual_grant = app.grant_consent(people["alice"], alice_cameo, "mutuals", scope=["generate", "remix"])
        self.note(f"alice lets her mutuals use her cameo (grant {mutual_grant})")
        app.grant_consent(people["bob"], bob_cameo, "approved", grantees=[people["alice"]], scope=["generate"])
        self.note("bob lets only alice use his cameo, for new videos only")
        try:
            app.request_generation(people["carol"], "carol and alice at the beach", cameo_ids=[alice_cameo])
        except ProvenanceError as refused:
            self.note(f"carol asks for a video with alice: refused before rendering: {refused}")

        runner = system.pipeline(system.gate_workers(render=True, moderate=True, sign=True, policy=policy))

        seeds = iter(range(1, 100))  # fixed seeds: the demo renders (and so decides) the same way every run

        def make(who: str, prompt: str, **kwargs: Any) -> UUID | None:
            try:
                video_id = app.request_generation(
                    people[who], prompt, parameters=dict(SIZE), seed=next(seeds), **kwargs
                )
            except ProvenanceError as refused:
                self.note(f"{who}: {prompt!r} -> refused: {refused}")
                return None
            runner.run_until_idle()
            video = app.video(video_id)
            verdict = video.moderation.verdict if video.moderation else "-"
            outcome = "PUBLISHED" if video.is_live else video.state.upper()
            reasons = f": {'; '.join(video.block_reasons)}" if video.block_reasons else ""
            self.note(f"{who}: {prompt!r} -> moderation {verdict}, {outcome}{reasons}")
            if video.signature is not None:
                path = export(app.blobs, video.signature.signed_uri, self.out / "videos" / f"{video_id}.mp4")
                self.note(f"   signed file: {path}")
            return video_id

        self.step("Generating videos: render -> moderate -> watermark and sign -> publish")
        bob_with_alice = make("bob", STORY["with_friend"], cameo_ids=[alice_cameo])
        plain = make("alice", STORY["plain"])
        make("carol", f"blood and gore everywhere, {STORY['gore']}")

        self.step("Remixes: alice remixes bob's video, bob remixes her remix")
        remix = make("alice", STORY["remix"], remix_of=bob_with_alice)
        remix_of_remix = make("bob", STORY["remix_of_remix"], remix_of=remix)
        if None in (bob_with_alice, plain, remix, remix_of_remix):
            raise ProvenanceError("the demo could not publish the videos the rest of its story needs (see above)")

        self.step("A likeness without consent: mallory registers a 'cameo' made from a photo of alice")
        mallory_cameo = app.register_cameo(people["mallory"], encode_png(images["alice"]))
        self.note(f"mallory's cameo is held for trust and safety: {system.verify_cameo(mallory_cameo)}")
        make("mallory", STORY["likeness"], cameo_ids=[mallory_cameo])

        system.catch_up()
        self.note(f"feed now shows {len(system.reads.feed_ids())} videos")

        self.step("alice revokes consent for her mutuals: the cascade")
        outcome = app.revoke_consent(people["alice"], alice_cameo, mutual_grant, "I no longer want my face in these")
        for record in outcome.takedowns:
            self.note(f"taken down {record.video_id} ({record.source}, case {record.case_id})")
        system.catch_up()
        self.note(f"feed now shows {len(system.reads.feed_ids())} videos")

        self.step("A platform receives a copy with the metadata stripped (re-encoded): resolved by the watermark")
        plain_file = self.out / "videos" / f"{plain}.mp4"
        stripped = self._reencode(plain_file, "stripped")
        self._verify(system, stripped)

        self.step("A tampered file (one byte changed in the video data)")
        tampered = self._tamper(plain_file)
        self._verify(system, tampered)

        self.step("An auditor traces a clip from the file alone: verify, then trace to its origin")
        signed_file = self.out / "videos" / f"{remix_of_remix}.mp4"
        report = self._verify(system, signed_file)
        video_id = report.get("video_id") or str(remix_of_remix)
        for line in render_trace(system.reads.trace(video_id)):
            self.say(f"     {line}")

        self.step("Done")
        self.note(f"everything is in {self.out}: videos/ (signed files), faces/, data/ (event store, read models)")
        self.note(f"try: PROVENANCE_HOME={self.out / 'data'} provenance trace {video_id}")
        return 0

    # --- helpers ---------------------------------------------------------------------------------------

    def _train_policy(self, system: System) -> Path:
        """Train the development violence head on the story's scenes (at other seeds), and evaluate it."""
        from devkit.clip import development_backbone_config, synthesize_face
        from generator import RenderSpec
        from moderation.backbone import load_backbone
        from moderation.sampling import SamplingConfig
        from moderation.training import evaluate, train_head

        folder = self.out / "training"
        sampling = SamplingConfig(fps=2.0)
        for split, rounds in (("train", range(3)), ("held-out", range(3, 4))):
            for round_no in rounds:
                for number, scene in enumerate(STORY.values()):
                    seed = 1000 + 97 * round_no + number
                    # Half the clips carry a face, so the head learns the blood and not "no face here".
                    faces = {"face": synthesize_face(200 + seed)} if (number + round_no) % 2 else {}
                    for label, prompt in (("violence", f"blood and gore, {scene}"), ("safe", scene)):
                        spec = RenderSpec(prompt=prompt, seed=seed, cameos=faces, **TRAINING_SIZE)
                        target = folder / split / label
                        self._training_example(system, spec, target, sampling, whole=split == "held-out")
        quiet = logging.getLogger()
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # open_clip warns that the development model has random weights: it does
        try:
            backbone = load_backbone(development_backbone_config())
        finally:
            quiet.setLevel(level)
        head = self.out / "policy" / "heads" / "violence.safetensors"
        report = train_head(folder / "train", head, backbone, positive_label="violence", sampling=sampling)
        self.note(report.render())
        evaluation = evaluate(folder / "held-out", backbone, head=head, sampling=sampling)
        self.note(
            f"held-out: precision {evaluation.precision:.2f}, recall {evaluation.recall:.2f} "
            f"at threshold {evaluation.threshold:.2f}"
        )
        policy = self.out / "policy" / "development.yaml"
        policy.write_text(
            "# DEVELOPMENT policy written by `provenance demo`: one category, scored by a head trained in the demo\n"
            "# on frames the reference renderer draws ('blood'/'gore' prompts add red splatter). Not a real policy.\n"
            'schema: provenance-moderation-policy/1\nname: development-demo\nversion: "0.1.0"\n'
            "calibrated_for: provenance-devkit-tiny\n"
            "categories:\n  violence_gore:\n    label: Violence and gore (development stand-in)\n"
            "    head: {file: heads/violence.safetensors, threshold: 0.5, review_band: 0.0}\n"
        )
        return policy

    def _training_example(
        self, system: System, spec: RenderSpec, target: Path, sampling: SamplingConfig, *, whole: bool
    ) -> None:
        """The rendered clip (`whole`, scored as the gate scores a file) or its frames that show the content.

        A violent clip's frames count only once the blood is on screen: the first ones show a plain scene.
        """
        from generator import render_to_blob
        from moderation.sampling import iter_media_batches
        from provenance.stages import encode_png

        outcome = render_to_blob(spec, system.app.blobs)
        target.mkdir(parents=True, exist_ok=True)
        if whole:
            export(system.app.blobs, outcome.blob.uri, target / f"{spec.seed}.mp4")
            return
        first_blood = min(outcome.script.bounce_times, default=0.0) + 0.25 if outcome.script.content_flags else 0.0
        for batch in iter_media_batches(system.app.blobs.resolve(outcome.blob.uri), sampling):
            for sample in batch:
                if sample.timestamp_s >= first_blood:
                    (target / f"{spec.seed}-{sample.index}.png").write_bytes(encode_png(sample.image))

    def _reencode(self, source: Path, name: str) -> Path:
        import av

        target = self.out / "received" / f"{name}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(source)) as src, av.open(str(target), "w") as dst:
            stream = src.streams.video[0]
            out = dst.add_stream("libx264", rate=stream.average_rate)
            out.width, out.height, out.pix_fmt = stream.width, stream.height, "yuv420p"
            out.options = {"crf": "23"}
            for frame in src.decode(stream):
                for packet in out.encode(frame):
                    dst.mux(packet)
            for packet in out.encode(None):
                dst.mux(packet)
        self.note(f"re-encoded copy at CRF 23 (no manifest): {target}")
        return target

    def _tamper(self, source: Path) -> Path:
        target = self.out / "received" / "tampered.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        data = bytearray(source.read_bytes())
        mdat = data.find(b"mdat")
        data[mdat + 4096] ^= 0xFF
        target.write_bytes(bytes(data))
        self.note(f"flipped one byte of the video data: {target}")
        return target

    def _verify(self, system: System, path: Path) -> dict[str, Any]:
        from provenance.credentials.verify import verify_file
        from provenance.verification import ReadModelStatus

        system.catch_up()
        trust = system.trust()
        report: dict[str, Any] = verify_file(path, trust, ReadModelStatus(system.reads)).to_json()
        self.note(f"provenance verify {path.name}")
        for line in render_verification(report, trusted_anchors=trust is not None):
            self.note(f"   {line}")
        return report


def run_demo(out: Path) -> int:
    return Demo(out).run()
