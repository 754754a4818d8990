"""The content policy: categories defined by text prompts and/or trained heads, each with its thresholds.

A policy is a versioned YAML or JSON file (the default ships in `moderation/policies/default.yaml`). The
prompt score of a category follows the CLIP concept safety checkers: the highest cosine similarity between
the frame's image embedding and the category's concept embeddings, judged against the category threshold
with a review band below it. A category may also name a linear head (see `moderation.heads`), scored as a
probability against its own threshold. Prompt embeddings come from the torch text tower once per policy
file and backbone and are cached on disk beside the exported encoders.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from moderation.errors import PolicyError
from moderation.scores import ScorerSpec

if TYPE_CHECKING:
    from moderation.backbone import Backbone
    from moderation.heads import LinearHead

POLICY_SCHEMA = "provenance-moderation-policy/1"
_CATEGORY_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class HeadRule:
    file: Path
    threshold: float
    review_band: float


@dataclass(frozen=True)
class Category:
    id: str
    label: str
    prompts: tuple[str, ...]
    threshold: float
    review_band: float
    head: HeadRule | None = None


@dataclass(frozen=True)
class Policy:
    name: str
    version: str
    sha256: str
    path: Path
    categories: tuple[Category, ...]
    calibrated_for: str = ""

    def category(self, category_id: str) -> Category:
        for category in self.categories:
            if category.id == category_id:
                return category
        known = ", ".join(c.id for c in self.categories)
        raise PolicyError(f"policy {self.name} has no category {category_id!r} (it has {known})")


def default_policy_path() -> Path:
    return Path(str(resources.files("moderation") / "policies" / "default.yaml"))


def development_policy_path() -> Path:
    """The default categories with thresholds above what the random devkit backbone scores (see file)."""
    return Path(str(resources.files("moderation") / "policies" / "development.yaml"))


def load_policy(path: Path | None = None) -> Policy:
    """Reads and checks a policy file; every problem is a one-line `PolicyError`."""
    path = Path(path) if path is not None else default_policy_path()
    if not path.is_file():
        raise PolicyError(f"policy file not found: {path}")
    raw = path.read_bytes()
    document = _parse(path, raw)
    if document.get("schema") != POLICY_SCHEMA:
        raise PolicyError(f"{path.name}: 'schema' must be {POLICY_SCHEMA!r}")
    name = _text(document, "name", path.name)
    version = _text(document, "version", path.name)
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise PolicyError(f"{path.name}: 'defaults' must be a mapping")
    entries = document.get("categories")
    if not isinstance(entries, dict) or not entries:
        raise PolicyError(f"{path.name}: 'categories' must be a non-empty mapping of id to category")
    categories = tuple(_category(path, str(key), value, defaults) for key, value in entries.items())
    return Policy(
        name=name,
        version=version,
        sha256=hashlib.sha256(raw).hexdigest(),
        path=path,
        categories=categories,
        calibrated_for=str(document.get("calibrated_for", "")),
    )


def _parse(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        if path.suffix.lower() == ".json":
            document = json.loads(raw)
        else:
            import yaml

            document = yaml.safe_load(raw)
    except Exception as exc:
        raise PolicyError(f"policy file {path.name} is not valid YAML/JSON") from exc
    if not isinstance(document, dict):
        raise PolicyError(f"policy file {path.name} must hold a mapping at its top level")
    return document


def _text(document: dict[str, Any], key: str, where: str) -> str:
    value = document.get(key)
    if not isinstance(value, str | int | float) or not str(value).strip():
        raise PolicyError(f"{where}: {key!r} is required")
    return str(value)


def _number(value: Any, what: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= float(value) <= high:
        raise PolicyError(f"{what} must be a number between {low} and {high}")
    return float(value)


def _category(path: Path, key: str, entry: Any, defaults: dict[str, Any]) -> Category:
    where = f"{path.name}: category {key!r}"
    if not _CATEGORY_ID.match(key):
        raise PolicyError(f"{where}: ids are lower-case letters, digits and underscores")
    if not isinstance(entry, dict):
        raise PolicyError(f"{where} must be a mapping")
    prompts = entry.get("prompts") or []
    if not isinstance(prompts, list) or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise PolicyError(f"{where}: 'prompts' must be a list of non-empty strings")
    head_entry = entry.get("head")
    if not prompts and not head_entry:
        raise PolicyError(f"{where} needs prompts, a head, or both")
    threshold, band = 0.0, 0.0
    if prompts:
        threshold = _number(entry.get("threshold", defaults.get("threshold")), f"{where}: threshold", -1.0, 1.0)
        band = _number(entry.get("review_band", defaults.get("review_band", 0.0)), f"{where}: review_band", 0.0, 2.0)
    head: HeadRule | None = None
    if head_entry:
        if not isinstance(head_entry, dict) or not isinstance(head_entry.get("file"), str):
            raise PolicyError(f"{where}: 'head' must be a mapping with a 'file'")
        head_file = Path(head_entry["file"])
        head = HeadRule(
            file=head_file if head_file.is_absolute() else path.parent / head_file,
            threshold=_number(head_entry.get("threshold", 0.5), f"{where}: head threshold", 0.0, 1.0),
            review_band=_number(head_entry.get("review_band", 0.0), f"{where}: head review_band", 0.0, 1.0),
        )
    return Category(
        id=key,
        label=str(entry.get("label") or key),
        prompts=tuple(p.strip() for p in prompts),
        threshold=threshold,
        review_band=band,
        head=head,
    )


class PolicyScorer:
    """Scores image embeddings against every category of a policy; applies no threshold itself."""

    def __init__(self, policy: Policy, backbone: Backbone, *, cache_dir: Path | None = None) -> None:
        from moderation.heads import load_head

        self.policy = policy
        self.backbone = backbone
        self.concepts = _concept_embeddings(policy, backbone, cache_dir)
        self.heads: dict[str, LinearHead] = {}
        for category in policy.categories:
            if category.head is not None:
                head = load_head(category.head.file)
                head.check_backbone(backbone)
                self.heads[category.id] = head
        self.specs = self._specs()

    def _specs(self) -> list[tuple[ScorerSpec, str, str]]:
        backbone = self.backbone
        version = f"{self.policy.name}@{self.policy.version}"
        specs: list[tuple[ScorerSpec, str, str]] = []
        for category in self.policy.categories:
            if category.prompts:
                spec = ScorerSpec(
                    name="policy.prompts",
                    label=category.id,
                    version=version,
                    model_hash=backbone.model_hash,
                    threshold=category.threshold,
                    review_band=category.review_band,
                    description=f"{category.label} (concept prompts)",
                    development_model=backbone.development_model,
                    detail={"policy_sha256": self.policy.sha256, "prompts": len(category.prompts)},
                )
                specs.append((spec, category.id, "prompts"))
            if category.head is not None:
                head = self.heads[category.id]
                spec = ScorerSpec(
                    name="policy.head",
                    label=category.id,
                    version=version,
                    model_hash=head.sha256,
                    threshold=category.head.threshold,
                    review_band=category.head.review_band,
                    description=f"{category.label} (trained head)",
                    development_model=backbone.development_model,
                    detail={"policy_sha256": self.policy.sha256, "backbone_model_hash": backbone.model_hash},
                )
                specs.append((spec, category.id, "head"))
        return specs

    def score(self, embeddings: np.ndarray) -> list[tuple[ScorerSpec, np.ndarray]]:
        """Each scorer's score per embedding row, in policy order."""
        out: list[tuple[ScorerSpec, np.ndarray]] = []
        for spec, category_id, kind in self.specs:
            if kind == "prompts":
                scores = (embeddings @ self.concepts[category_id].T).max(axis=1)
            else:
                scores = self.heads[category_id].probability(embeddings)
            out.append((spec, np.asarray(scores, dtype=np.float64)))
        return out


def _concept_embeddings(policy: Policy, backbone: Backbone, cache_dir: Path | None) -> dict[str, np.ndarray]:
    """Prompt embeddings per category, from the disk cache when this policy met this backbone before."""
    key = hashlib.sha256(f"{backbone.model_name}\n{backbone.model_hash}\n{policy.sha256}".encode()).hexdigest()[:32]
    folder = Path(cache_dir if cache_dir is not None else backbone.config.cache_dir) / "text"
    cached = folder / f"{key}.npz"
    wanted = [c for c in policy.categories if c.prompts]
    if cached.is_file():
        try:
            with np.load(cached) as data:
                loaded = {c.id: np.asarray(data[c.id], dtype=np.float32) for c in wanted}
            if all(loaded[c.id].shape == (len(c.prompts), backbone.embed_dim) for c in wanted):
                return loaded
        except Exception:
            pass  # unreadable cache: recompute and overwrite it below
    computed = {c.id: backbone.encode_texts(c.prompts) for c in wanted}
    folder.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=".text-", suffix=".npz", dir=folder)
    os.close(handle)
    try:
        with open(temp_name, "wb") as stream:
            np.savez(stream, **computed)  # type: ignore[arg-type]
        os.replace(temp_name, cached)
    except OSError:
        Path(temp_name).unlink(missing_ok=True)
    return computed
