"""Property-based tests over random sequences of commands.

Whatever people do (grant to every audience with expiries, revoke, follow and unfollow, request, publish,
remix, take down, appeal, reinstate, erase, let time pass), and wherever the projections crash, the rules hold
after the embedded runner's consent watch has run: no live video without live consent for each of its cameos,
no live video below a taken-down ancestor, the feed shows exactly the live videos, and the read models equal a
rebuild from scratch.
"""

from __future__ import annotations

import contextlib
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kernel.errors import ProvenanceError
from projections.framework import ProjectionStore
from projections.queries import ReadModels
from projections.store import all_projections, open_store
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.log import last_position, split_log
from provenance.rebuild import merge, replay_share
from provenance.runner import EmbeddedRunner, ProjectionConsumer
from tests.core.support import ProcessDied, face, pass_gates
from tests.core.test_projections import CrashingFeed, dump

HANDLES = ("alice", "bob", "carol", "tess")


class PlatformMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp())
        self.now = datetime.now(UTC)
        self.url = f"sqlite:///{self.dir / 'projections.db'}"
        self.system = System(
            Settings(home=self.dir, event_store="memory", projections_url=self.url), clock=lambda: self.now
        )
        self.app = self.system.app
        self.people = {
            h: self.app.register_person(h, roles=["trust_and_safety"] if h == "tess" else ["member"]) for h in HANDLES
        }
        self.cameo = self.app.register_cameo(self.people["alice"], face())
        self.app.follow(self.people["alice"], self.people["bob"])  # alice and bob start as mutuals
        self.app.follow(self.people["bob"], self.people["alice"])
        self.grants: list[str] = []
        self.videos: list[UUID] = []
        self.store = self.system.store

    def teardown(self) -> None:
        self.system.close()

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
        with contextlib.suppress(ProvenanceError):  # the cameo was erased
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

    @rule(creator=st.sampled_from(HANDLES[:3]), parent=st.none() | st.integers(0, 50))
    def request_and_publish(self, creator: str, parent: int | None) -> None:
        """The whole way in one step, so that runs reach published videos with cameos often."""
        self.request(creator, True, parent)
        if self.videos:
            self.pass_gates_and_publish(len(self.videos) - 1, "allow")

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

    @precondition(lambda self: self.grants)
    @rule(index=st.integers(0, 50), person=st.sampled_from(HANDLES[1:3]))
    def take_off_the_approved_list(self, index: int, person: str) -> None:
        with contextlib.suppress(ProvenanceError):  # not an approved list, or the cameo was erased
            self.app.remove_grantee(
                self.people["alice"], self.cameo, self.grants[index % len(self.grants)], self.people[person]
            )

    @rule(hours=st.sampled_from([1, 2]))
    def time_passes(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    @rule(
        audience=st.sampled_from(["approved", "everyone", "mutuals"]),
        hours=st.sampled_from([1, 2]),
        creator=st.sampled_from(HANDLES[1:3]),
    )
    def grant_briefly_and_publish(self, audience: str, hours: int, creator: str) -> None:
        """A grant that expires soon and a video made under it: the runs that test expiries and unfollows."""
        self.grant(audience, creator, ["generate", "remix"], hours)
        self.request_and_publish(creator, None)

    @rule(alice_leaves=st.booleans(), start=st.booleans())
    def mutual_ends_or_resumes(self, alice_leaves: bool, start: bool) -> None:
        who, whom = ("alice", "bob") if alice_leaves else ("bob", "alice")
        self.follow_or_unfollow(who, whom, start)

    @rule(who=st.sampled_from(HANDLES[:3]), whom=st.sampled_from(HANDLES[:3]), start=st.booleans())
    def follow_or_unfollow(self, who: str, whom: str, start: bool) -> None:
        with contextlib.suppress(ProvenanceError):  # following oneself
            (self.app.follow if start else self.app.unfollow)(self.people[who], self.people[whom])

    @precondition(lambda self: self.videos)
    @rule(index=st.integers(0, 50), appeal_first=st.booleans())
    def appeal_and_reinstate(self, index: int, appeal_first: bool) -> None:
        video = self.app.video(self.videos[index % len(self.videos)])
        for case in video.open_cases():
            with contextlib.suppress(ProvenanceError):  # not the creator, or the rule does not hold
                if appeal_first:
                    self.app.appeal(video.id, case.case_id, video.creator_id, "please")
                self.app.reinstate(video.id, case.case_id, self.people["tess"], "reviewed")

    @precondition(lambda self: len(self.videos) > 6)
    @rule()
    def erase(self) -> None:
        with contextlib.suppress(ProvenanceError):  # already erased
            self.app.erase_cameo(self.people["alice"], self.cameo, "delete my likeness")

    @rule(crash_on_batch=st.integers(1, 4), batch_size=st.integers(1, 9))
    def projections_crash_and_restart(self, crash_on_batch: int, batch_size: int) -> None:
        others = [p for p in all_projections() if p.name != "feed"]
        crashing = ProjectionStore(self.url, [CrashingFeed(crash_on_batch), *others])
        with contextlib.suppress(ProcessDied):
            self.catch_up(crashing, batch_size)
        crashing.engine.dispose()

    @invariant()
    def every_live_video_is_under_live_consent_and_the_feed_shows_exactly_them(self) -> None:
        self.system.catch_up()  # the embedded runner: projections, the consent watch and its expiry timer
        live = set()
        for video_id in self.videos:
            video = self.app.video(video_id)
            if video.is_live:
                assert self.app.why_not_live(video, self.now) == [], video_id
                live.add(str(video_id))
        assert ReadModels(self.store.url).feed_ids() == live

    def check_rebuild(self) -> None:
        scratch = open_store(f"sqlite:///{self.dir / 'scratch.db'}")
        self.catch_up(scratch, batch_size=1000)
        assert dump(scratch) == dump(self.store)
        scratch.engine.dispose()

    def check_shares(self) -> None:
        """Every row derives from the events of one stream: read models fed with each share of the log on its own
        hold, between them, exactly the rows of those fed with all of it (what a rebuild in shares relies on);
        merged, and fed on from the lowest of their checkpoints, they are those read models."""
        files = [self.dir / f"share{n}.db" for n in range(3)]
        shares = [open_store(f"sqlite:///{file}") for file in files]
        end = last_position(self.app)
        for store, share in zip(shares, split_log(len(shares)), strict=True):
            replay_share(self.app, store, share, end, batch_size=5)
        parts = [dump(store) for store in shares]
        joined = {table: sorted(repr(row) for part in parts for row in part[table]) for table in parts[0]}
        assert joined == {table: sorted(map(repr, rows)) for table, rows in dump(self.store).items()}
        merge(shares[0], [str(file) for file in files[1:]])
        EmbeddedRunner(self.app, [ProjectionConsumer(shares[0])], batch_size=5).run_until_idle()
        assert dump(shares[0]) == dump(self.store)
        for store, file in zip(shares, files, strict=True):
            store.engine.dispose()
            file.unlink()

    @invariant()
    def rebuilt_equals_incremental(self) -> None:
        if len(self.videos) % 3 == 0:  # rebuilding after every step would make the run slow
            self.catch_up()
            self.check_rebuild()
            (self.dir / "scratch.db").unlink()
            self.check_shares()


TestPlatform = PlatformMachine.TestCase
TestPlatform.settings = settings(
    max_examples=40, stateful_step_count=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
