"""The read models' tables. Each projection owns its tables and can drop and rebuild them on its own."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index
from sqlmodel import Field, SQLModel


class Checkpoint(SQLModel, table=True):
    """How far a consumer has read a source (the notification log, or one Kafka partition)."""

    __tablename__ = "checkpoints"
    consumer: str = Field(primary_key=True)
    source: str = Field(primary_key=True)
    partition: int = Field(primary_key=True)
    position: int = Field(sa_column=Column(BigInteger, nullable=False))  # Kafka offsets pass 2**31


class StreamVersion(SQLModel, table=True):
    """The last version of each stream a projection applied: redelivered events are skipped by it."""

    __tablename__ = "stream_versions"
    projection: str = Field(primary_key=True)
    stream_id: str = Field(primary_key=True)
    version: int


class ParkedEvent(SQLModel, table=True):
    """Events a consumer could not handle (unknown type or version, corrupt payload), with the reason."""

    __tablename__ = "parked_events"
    id: int | None = Field(default=None, primary_key=True)
    consumer: str = Field(index=True)
    source: str
    partition: int
    position: int = Field(sa_column=Column(BigInteger, nullable=False))
    event_id: str | None = None
    reason: str
    raw: bytes
    parked_at: datetime
    replayed_at: datetime | None = None


class FeedItem(SQLModel, table=True):
    __tablename__ = "feed_items"
    __table_args__ = (Index("ix_feed_order", "visible", "published_at", "video_id"),)
    video_id: str = Field(primary_key=True)
    creator_id: str
    prompt: str
    remix_of: str | None = None
    requested_at: datetime
    published_at: datetime | None = None
    visible: bool = False
    development_model: bool = False
    grant_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    open_cases: list[str] = Field(default_factory=list, sa_column=Column(JSON))


class LineageVideo(SQLModel, table=True):
    __tablename__ = "lineage_videos"
    video_id: str = Field(primary_key=True)
    parent_id: str | None = Field(default=None, index=True)
    creator_id: str
    prompt: str
    seed: int = Field(sa_column=Column(BigInteger, nullable=False))  # seeds are 56-bit
    parameters: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    state: str
    requested_at: datetime
    updated_at: datetime
    content_sha256: str | None = Field(default=None, index=True)
    blob_uri: str | None = None
    rendered: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    moderation: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    signature: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    signed_sha256: str | None = Field(default=None, index=True)
    manifest_id: str | None = Field(default=None, index=True)
    soft_binding: str | None = Field(default=None, index=True)
    block_gate: str | None = None
    block_reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    taken_down: bool = False
    open_cases: list[str] = Field(default_factory=list, sa_column=Column(JSON))


class LineageCameo(SQLModel, table=True):
    __tablename__ = "lineage_cameos"
    video_id: str = Field(primary_key=True)
    cameo_id: str = Field(primary_key=True, index=True)
    grant_id: str


class ConsentCameo(SQLModel, table=True):
    __tablename__ = "consent_cameos"
    cameo_id: str = Field(primary_key=True)
    owner_id: str = Field(index=True)
    registered_at: datetime
    erased_at: datetime | None = None
    uses: int = 0


class ConsentGrant(SQLModel, table=True):
    __tablename__ = "consent_grants"
    grant_id: str = Field(primary_key=True)
    cameo_id: str = Field(index=True)
    owner_id: str
    audience: str
    grantees: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    scope: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    granted_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None


class Person(SQLModel, table=True):
    """Who an actor id is, so the audit trail and traces read as handles rather than ids."""

    __tablename__ = "audit_people"
    person_id: str = Field(primary_key=True)
    handle: str = Field(index=True)
    display_name: str
    roles: list[str] = Field(default_factory=list, sa_column=Column(JSON))


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_stream", "stream_id", "stream_version"),)
    event_id: str = Field(primary_key=True)
    stream_type: str
    stream_id: str
    stream_version: int
    event_type: str
    schema_version: int
    occurred_at: datetime
    actor: str
    command_id: str | None = None
    reason: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class TakedownCase(SQLModel, table=True):
    __tablename__ = "takedown_cases"
    case_id: str = Field(primary_key=True)
    video_id: str = Field(index=True)
    source: str
    reason_code: str
    policy_clause: str | None = None
    legal_ground: str | None = None
    automated: bool
    statement_of_reasons: str
    caused_by_event: str | None = None
    caused_by_stream: str | None = None
    issued_by: str
    issued_at: datetime
    status: str = "open"
    appeal_grounds: str | None = None
    appealed_at: datetime | None = None
    resolution: str | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
