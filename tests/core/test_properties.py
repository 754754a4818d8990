"""Property-based tests over random sequences of commands.

Whatever people do (grant, revoke, request, publish, remix, take down, let time pass), and wherever the
projections crash, the rules hold: nothing published under revoked or expired consent stays visible, the
feed never shows a taken-down video, and the read models equal a rebuild from scratch.
"""

from __future__ import annotations

import contextlib
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kernel.errors import ProvenanceError
from projections import ProjectionStore, all_projections, open_store
from projections.queries import ReadModels
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.runner import EmbeddedRunner, ProjectionConsumer
from tests.core.support import pass_gates
from tests.core.test_projections import CrashingFeed, dump

HANDLES = ("alice", "bob", "carol", "tess")


class PlatformMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp())
        self.now = datetime.now(UTC)
        self.app = System(Settings(home=self.dir, event_store="memory"), clock=lambda: self.now).app
        self.people = {
            h: self.app.register_person(h, roles=["trust_and_safety"] if h == "tess" else ["member"]) for h in HANDLES
        }
        self.cameo = self.app.register_cameo(self.people["alice"], b"face")
        self.grants: list[str] = []
        self.videos: list[UUID] = []
        self.url = f"sqlite:///{self.dir / 'projections.db'}"
        self.store = open_store(self.url)

    def teardown(self) -> None:
        self.app.close()
        self.store.engine.dispose()

    def catch_up(self, store: ProjectionStore | None = None, batch_size: int = 7) -> None:
        EmbeddedRunner(self.app, [ProjectionConsumer(store or self.store)], batch_size=batch_size).run_once()

    @rule(
        audience=st.sampled_from(["approved", "everyone", "mutuals"]),
        grantee=st.sampled_from(HANDLES[1:3]),
        scope=st.sampled_from([["generate"], ["remix"], ["generate", "remix"]]),
        hours=st.sampled_from([None, 1, 3]),
    )
    def grant(self, audience: str, grantee: str, scope: list[str], hours: int | None) -> None:
        expires = self.now + timedelta(hours=hours) if hours else None
        grantees = [self.people[grantee]] if audience == "approved" else []
        self.grants.append(
            self.app.grant_consent(
                self.people["alice"], self.cameo, audience, grantees=grantees, scope=scope, expires_at=expires
            )
        )

    @precondition(lambda self: self.grants)
    @rule(index=st.integers(0, 50))
    def revoke(self, index: int) -> None:
        with contextlib.suppress(ProvenanceError):  # already revoked
            self.app.revoke_consent(self.people["alice"], self.cameo, self.grants[index % len(self.grants)], "no")

    @rule(creator=st.sampled_from(HANDLES[:3]), with_cameo=st.booleans(), parent=st.none() | st.integers(0, 50))
    def request(self, creator: str, with_cameo: bool, parent: int | None) -> None:
        remix_of = self.videos[parent % len(self.videos)] if parent is not None and self.videos else None
        with contextlib.suppress(ProvenanceError):
            self.videos.append(
                self.app.request_generation(
                    self.people[creator], "clip", cameo_ids=[self.cameo] if with_cameo else [], remix_of=remix_of
                )
            )

    @precondition(lambda self: self.videos)
    @rule(index=st.integers(0, 50), verdict=st.sampled_from(["allow", "allow", "block"]))
    def pass_gates_and_publish(self, index: int, verdict: str) -> None:
        video = self.videos[index % len(self.videos)]
        try:
            pass_gates(self.app, video, verdict)
            self.app.publish(video)
        except ProvenanceError:
            pass  # already past a gate, blocked, or taken down

    @precondition(lambda self: self.videos)
    @rule(index=st.integers(0, 50))
    def take_down(self, index: int) -> None:
        with contextlib.suppress(ProvenanceError):
            self.app.take_down(
                self.videos[index % len(self.videos)],
                self.people["tess"],
                reason_code="policy",
                statement_of_reasons="breaks policy",
            )

    @rule(hours=st.sampled_from([1, 2]))
    def time_passes(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    @rule(crash_on_batch=st.integers(1, 4), batch_size=st.integers(1, 9))
    def projections_crash_and_restart(self, crash_on_batch: int, batch_size: int) -> None:
        others = [p for p in all_projections() if p.name != "feed"]
        crashing = ProjectionStore(self.url, [CrashingFeed(crash_on_batch), *others])
        with contextlib.suppress(RuntimeError):
            self.catch_up(crashing, batch_size)
        crashing.engine.dispose()

    def live_consent(self, video: Any) -> bool:
        cameo = self.app.cameo(self.cameo)
        for used in video.cameos:
            grant = cameo.grants.get(used.grant_id)
            if grant is not None and not grant.is_live(self.now):
                return False
        return True

    @invariant()
    def feed_shows_exactly_the_live_videos_with_live_consent(self) -> None:
        self.catch_up()
        shown = ReadModels(self.store.engine).feed_ids(now=self.now)
        expected = set()
        for video_id in self.videos:
            video = self.app.video(video_id)
            if video.is_live and self.live_consent(video):
                expected.add(str(video_id))
            if video.is_live and not self.live_consent(video):
                # Revocation takes it down; only expiry can leave it published, and the feed hides it.
                assert any(
                    (g := self.app.cameo(self.cameo).grants.get(u.grant_id)) and g.revoked_at is None
                    for u in video.cameos
                )
        assert shown == expected

    @invariant()
    def nothing_published_under_revoked_consent(self) -> None:
        cameo = self.app.cameo(self.cameo)
        for video_id in self.videos:
            video = self.app.video(video_id)
            if video.is_live:
                for used in video.cameos:
                    grant = cameo.grants.get(used.grant_id)
                    assert grant is None or grant.revoked_at is None

    def check_rebuild(self) -> None:
        scratch = open_store(f"sqlite:///{self.dir / 'scratch.db'}")
        self.catch_up(scratch, batch_size=1000)
        assert dump(scratch) == dump(self.store)
        scratch.engine.dispose()

    @invariant()
    def rebuilt_equals_incremental(self) -> None:
        if len(self.videos) % 3 == 0:  # rebuilding after every step would make the run slow
            self.catch_up()
            self.check_rebuild()
            (self.dir / "scratch.db").unlink()


TestPlatform = PlatformMachine.TestCase
TestPlatform.settings = settings(
    max_examples=25, stateful_step_count=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
