"""Distributed mode: the relay from the outbox to a Kafka topic, consumer groups, dead letters and roles.

Importing this package is cheap: kafka-python is imported only by the modules that talk to a broker, and
only when they do, so the embedded mode never needs it installed.
"""

from __future__ import annotations

WORKER_ROLES: tuple[str, ...] = ("generator", "moderation", "signing")
"""Gate workers: consumer groups whose handler turns an event into a command on the write side."""

ROLES: tuple[str, ...] = ("relay", "projections", "consent", *WORKER_ROLES)
"""Every process role of the distributed stack, as `provenance serve --role ROLE` accepts them."""

__all__ = ["ROLES", "WORKER_ROLES"]
