"""Verify the Content Credentials of a file, or failing that, find the video through its watermark.

Reading is offline: remote manifests and OCSP are never fetched, the container is sniffed from its first
bytes before any parser sees it, and the watermark decoder reads a bounded number of frames. Every input,
however broken, gets a report: C2PA's own state and failure codes where the SDK could judge the file, and
codes of our own (`provenance.*`) where it could not.

C2PA leaves a remix `Trusted` when its parent was tampered with before the remix was made: the failure is
recorded only in the ingredient's own validation results. The report therefore walks the ingredient chain
and gives each ingredient its own state, and `chain_state` is the worst state found anywhere in it.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol
from uuid import UUID

from provenance.credentials.c2pa_context import reading_context
from provenance.credentials.errors import CredentialsError
from provenance.credentials.formats import Container, sniff
from provenance.credentials.manifest import LOG_ASSERTION
from provenance.credentials.trust import TrustConfig
from provenance.credentials.watermark import ALG, decode_watermarks, soft_binding_value

State = Literal["Trusted", "Valid", "Invalid", "NoManifest"]
RecoveredBy = Literal["manifest", "watermark"]

FILE_NOT_FOUND = "provenance.fileNotFound"
NOT_A_FILE = "provenance.notAFile"
EMPTY_FILE = "provenance.emptyFile"
UNSUPPORTED_FORMAT = "provenance.unsupportedFormat"
UNREADABLE = "provenance.unreadable"
REMOTE_MANIFEST_NOT_FETCHED = "provenance.remoteManifestNotFetched"
NOT_VIDEO = "provenance.notVideo"
SIGNER_DISTRUSTED = "provenance.signerDistrusted"
UNDECODABLE_VIDEO = "provenance.undecodableVideo"

_UNTRUSTED = "signingCredential.untrusted"
_TRUSTED = "signingCredential.trusted"
_RANK: dict[str, int] = {"Invalid": 0, "Valid": 1, "Trusted": 2}
_MAX_DEPTH = 64


class StatusLookup(Protocol):
    """What the platform knows about a video now; implemented over the projections."""

    def status(self, video_id: UUID) -> dict[str, Any] | None: ...

    def resolve_soft_binding(self, alg: str, value: str) -> UUID | None: ...


@dataclass(frozen=True, slots=True)
class Failure:
    code: str
    explanation: str = ""
    url: str | None = None


@dataclass(frozen=True, slots=True)
class IngredientReport:
    depth: int
    """1 for the file's own ingredients, 2 for theirs, and so on."""
    title: str | None
    relationship: str | None
    manifest_id: str | None
    state: State
    failures: tuple[str, ...]
    video_id: str | None
    """The platform video it is, when a trusted signer says so (as for the file itself)."""
    signer: str | None
    claimed_video_id: str | None = None
    """The video id its manifest names, trusted or not: an unanchored signer can name any of our videos."""

    def to_json(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "title": self.title,
            "relationship": self.relationship,
            "manifest_id": self.manifest_id,
            "state": self.state,
            "failures": list(self.failures),
            "video_id": self.video_id,
            "claimed_video_id": self.claimed_video_id,
            "signer": self.signer,
        }


@dataclass(frozen=True, slots=True)
class VerificationReport:
    path: str
    state: State
    failures: tuple[str, ...]
    reason: str
    """One line a person can read: what was found, or why nothing could be."""
    container: str
    ingredients: tuple[IngredientReport, ...] = ()
    failure_details: tuple[Failure, ...] = field(default=(), repr=False)
    manifest_id: str | None = None
    video_id: str | None = None
    status: dict[str, Any] | None = None
    recovered_by: RecoveredBy | None = None
    signer: str | None = None
    development_pki: bool | None = None
    soft_binding: dict[str, str] | None = None
    """From the manifest, or as decoded from the watermark when there was no manifest."""
    watermark_checked: bool = False
    watermark_error: str | None = None
    """Why the frames could not be read for watermarks (too many video streams, none that decodes), when a manifest
    was read: the file may then show a video that no watermark named."""
    claimed_video_id: str | None = None
    """The video id the manifest claims, whatever its state; `video_id` is only ever a trusted answer."""
    watermark_video_id: str | None = None
    conflict: str | None = None
    """Set when the watermark and a trusted manifest name different videos, or the frames carry the watermarks of
    several videos (a splice): then `video_id` and `status` are those of the video whose status is the worst."""
    watermarks: tuple[dict[str, Any], ...] = ()
    """Every watermark in the frames, first found first: its soft-binding `value`, the `video_id` it resolves to
    (None: not one of ours) and that video's `status`."""
    success_codes: tuple[str, ...] = ()
    informational_codes: tuple[str, ...] = ()
    actions: tuple[dict[str, Any], ...] = ()
    """The active manifest's actions: action, digitalSourceType, softwareAgent."""
    certificate: dict[str, Any] | None = None
    """The signing certificate: subject, issuer, serial number (hex), validity, signature algorithm."""
    time_stamp: dict[str, Any] | None = None
    """The RFC 3161 time-stamp on the signature: its time, whether it validated and is trusted, its authority."""

    @property
    def chain_state(self) -> State:
        """The worst state of the file and of every ingredient that carries a manifest."""
        states = [self.state, *(i.state for i in self.ingredients if i.state != "NoManifest")]
        ranked = [s for s in states if s in _RANK]
        return min(ranked, key=_RANK.__getitem__) if ranked else self.state

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "state": self.state,
            "chain_state": self.chain_state,
            "failures": list(self.failures),
            "failure_details": [
                {"code": f.code, "explanation": f.explanation, "url": f.url} for f in self.failure_details
            ],
            "reason": self.reason,
            "container": self.container,
            "manifest_id": self.manifest_id,
            "ingredients": [i.to_json() for i in self.ingredients],
            "video_id": self.video_id,
            "status": self.status,
            "recovered_by": self.recovered_by,
            "signer": self.signer,
            "development_pki": self.development_pki,
            "soft_binding": self.soft_binding,
            "watermark_checked": self.watermark_checked,
            "watermark_error": self.watermark_error,
            "claimed_video_id": self.claimed_video_id,
            "watermark_video_id": self.watermark_video_id,
            "conflict": self.conflict,
            "watermarks": list(self.watermarks),
            "success_codes": list(self.success_codes),
            "informational_codes": list(self.informational_codes),
            "actions": list(self.actions),
            "certificate": self.certificate,
            "time_stamp": self.time_stamp,
        }

    def to_json_as(self, shown: str) -> dict[str, Any]:
        """`to_json` for a file whose own path is nobody's business (an upload in the server's scratch
        directory): the path, and the path or file name wherever a message quotes them, read `shown`."""
        text = json.dumps(self.to_json())
        for private in [p for p in (self.path, Path(self.path).name) if p]:
            text = text.replace(json.dumps(private)[1:-1], json.dumps(shown)[1:-1])
        found: dict[str, Any] = json.loads(text)
        return found


def verify_file(
    path: Path,
    trust: TrustConfig | None,
    status_lookup: StatusLookup | None = None,
    *,
    manifest_store: bytes | None = None,
) -> VerificationReport:
    """Verify `path` against `trust` (no anchors: nothing is `Trusted`).

    `manifest_store` validates the file against a stored manifest store instead of an embedded one
    (re-attachment of a manifest to a file whose embedded copy was stripped).
    """
    path = Path(path)
    shown = str(path)
    if not path.exists():
        return _no_manifest(shown, "none", FILE_NOT_FOUND, f"no such file: {path}")
    if not path.is_file():
        return _no_manifest(shown, "none", NOT_A_FILE, f"{path} is not a regular file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        return _no_manifest(shown, "none", UNREADABLE, f"cannot read {path}: {exc.strerror or exc}")
    if size == 0:
        return _no_manifest(shown, "none", EMPTY_FILE, f"{path.name} is empty")
    container = sniff(path)
    outcome = _read_manifest(path, container, trust, manifest_store)
    if isinstance(outcome, dict):
        report = _distrusting(_from_manifest(shown, container, outcome, status_lookup), outcome, trust)
        report = replace(report, development_pki=_development(report, path, container, trust, manifest_store))
        return _with_watermark(report, path, container, status_lookup)
    code, reason = outcome
    report = _from_watermark(shown, path, container, code, reason, status_lookup)
    # A manifest that cannot be parsed makes the file Invalid; its watermark still says which video it is.
    return replace(report, state="Invalid") if code == UNREADABLE else report


def _no_manifest(shown: str, container: str, code: str, reason: str) -> VerificationReport:
    return VerificationReport(
        path=shown,
        state="NoManifest",
        failures=(code,),
        failure_details=(Failure(code, reason),),
        reason=reason,
        container=container,
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _read_manifest(
    path: Path, container: Container, trust: TrustConfig | None, manifest_store: bytes | None
) -> dict[str, Any] | tuple[str | None, str]:
    """The manifest store JSON, or (failure code or None, reason) when there is none to read."""
    import c2pa

    try:
        with reading_context(trust) as context, open(path, "rb") as handle:
            if manifest_store is not None:
                reader = c2pa.Reader(container.mime or "video/mp4", handle, manifest_store, context=context)
            else:
                reader = c2pa.Reader.try_create(handle, context=context)
            if reader is None:
                return None, f"{path.name} carries no C2PA manifest"
            try:
                store = dict(json.loads(reader.json()))
                store["_signatures"] = _signatures(reader)
                return store
            finally:
                reader.close()
    except c2pa.C2paError.ManifestNotFound:
        return None, f"{path.name} carries no C2PA manifest"
    except c2pa.C2paError.NotSupported:
        kind = container.name if container.name != "unknown" else "an unrecognised format"
        return UNSUPPORTED_FORMAT, f"{path.name} is {kind}, which cannot carry an embedded C2PA manifest"
    except c2pa.C2paError as exc:
        message = _one_line(exc)
        if message.startswith("Remote") or "remote manifest" in message:
            return REMOTE_MANIFEST_NOT_FETCHED, f"{path.name} points to a remote manifest, which is never fetched"
        return UNREADABLE, f"{path.name} could not be parsed: {message}"
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        return UNREADABLE, f"{path.name} could not be read: {_one_line(exc)}"


def _signatures(reader: Any) -> dict[str, Any]:
    """Per manifest label, the signature details of the reader's crJSON (certificate and time-stamp info)."""
    try:
        document = json.loads(reader.crjson())
    except Exception:  # an SDK without crJSON, or a store it cannot express: the report just has less detail
        return {}
    found: dict[str, Any] = {}
    for manifest in document.get("manifests", []) if isinstance(document, dict) else []:
        if isinstance(manifest, dict) and isinstance(manifest.get("signature"), dict):
            found[str(manifest.get("label"))] = manifest["signature"]
    return found


def _codes(results: Any, kind: str) -> tuple[str, ...]:
    active = results.get("activeManifest") if isinstance(results, dict) else None
    entries = active.get(kind, []) if isinstance(active, dict) else []
    return tuple(dict.fromkeys(str(e["code"]) for e in entries if isinstance(e, dict) and e.get("code")))


def _actions_of(manifest: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    found = _assertion(manifest, "c2pa.actions.v2") or _assertion(manifest, "c2pa.actions") or {}
    keep = ("action", "digitalSourceType", "softwareAgent", "when")
    return tuple({k: a[k] for k in keep if k in a} for a in found.get("actions", []) if isinstance(a, dict))


def _certificate_of(signature: dict[str, Any] | None, info: dict[str, Any]) -> dict[str, Any] | None:
    details = (signature or {}).get("certificateInfo")
    if not isinstance(details, dict) and not info:
        return None
    details = details if isinstance(details, dict) else {}
    return {
        "subject": details.get("subject") or {"CN": info.get("common_name")},
        "issuer": details.get("issuer") or {"O": info.get("issuer")},
        "serial_number": details.get("serialNumber") or info.get("cert_serial_number"),
        "not_before": (details.get("validity") or {}).get("notBefore"),
        "not_after": (details.get("validity") or {}).get("notAfter"),
        "algorithm": (signature or {}).get("algorithm") or info.get("alg"),
    }


def _time_stamp_of(signature: dict[str, Any] | None, successes: tuple[str, ...]) -> dict[str, Any] | None:
    stamp = (signature or {}).get("timeStampInfo")
    if not isinstance(stamp, dict):
        return None
    authority = stamp.get("certificateInfo") or {}
    return {
        "time": stamp.get("timestamp"),
        "validated": "timeStamp.validated" in successes,
        "trusted": "timeStamp.trusted" in successes,
        "authority": (authority.get("subject") or {}).get("CN"),
    }


def _from_watermark(
    shown: str,
    path: Path,
    container: Container,
    code: str | None,
    reason: str,
    status_lookup: StatusLookup | None,
) -> VerificationReport:
    failures = [code] if code else []
    details = [Failure(code, reason)] if code else []
    if not container.is_video:
        if code is None:
            failures.append(NOT_VIDEO)
            details.append(Failure(NOT_VIDEO, f"{path.name} is not a video, so it carries no watermark"))
        return VerificationReport(
            path=shown,
            state="NoManifest",
            failures=tuple(failures),
            failure_details=tuple(details),
            reason=reason,
            container=container.name,
        )
    try:
        payloads = decode_watermarks(path)
    except CredentialsError as exc:
        failures.append(UNDECODABLE_VIDEO)
        details.append(Failure(UNDECODABLE_VIDEO, str(exc)))
        return VerificationReport(
            path=shown,
            state="NoManifest",
            failures=tuple(failures),
            failure_details=tuple(details),
            reason=f"{reason}; the video could not be decoded to look for a watermark",
            container=container.name,
            watermark_checked=True,
        )
    if not payloads:
        return VerificationReport(
            path=shown,
            state="NoManifest",
            failures=tuple(failures),
            failure_details=tuple(details),
            reason=f"{reason}; no watermark found",
            container=container.name,
            watermark_checked=True,
        )
    watermarks = _watermarks_of(payloads, status_lookup)
    videos = _videos_of(watermarks)
    chosen = _worst(videos) if videos else watermarks[0]
    video_id = chosen["video_id"]
    found = "; ".join(
        f"watermark {w['value']} resolves to video {w['video_id']}"
        if w["video_id"]
        else f"watermark {w['value']} is not known"
        for w in watermarks
    )
    return VerificationReport(
        path=shown,
        state="NoManifest",
        failures=tuple(failures),
        failure_details=tuple(details),
        reason=f"{reason}; {found}",
        container=container.name,
        video_id=video_id,
        status=chosen["status"],
        recovered_by="watermark" if video_id else None,
        soft_binding={"alg": ALG, "value": chosen["value"]},
        watermark_checked=True,
        watermark_video_id=video_id,
        conflict=_spliced(videos) if len(videos) > 1 else None,
        watermarks=tuple(watermarks),
    )


_SEVERITY = {"published": 0, "blocked": 2, "taken_down": 3}
"""How bad a video's platform status is: taken down over blocked over anything else over published."""


def status_severity(status: dict[str, Any] | None) -> int:
    """A rank of a platform status (`StatusLookup.status`), higher the worse; revoked consent adds to it. Where a
    file names several videos, the worst status is the one reported, never the most favourable."""
    if not status:
        return -1
    return 2 * _SEVERITY.get(str(status.get("status")), 1) + bool(status.get("consent_revoked"))


def _watermarks_of(payloads: tuple[bytes, ...], status_lookup: StatusLookup | None) -> list[dict[str, Any]]:
    """Each payload's soft-binding value, the video it resolves to and that video's status."""
    found = []
    for payload in payloads:
        value = soft_binding_value(payload)
        video_id = status_lookup.resolve_soft_binding(ALG, value) if status_lookup is not None else None
        status = status_lookup.status(video_id) if status_lookup is not None and video_id is not None else None
        found.append({"value": value, "video_id": str(video_id) if video_id else None, "status": status})
    return found


def _videos_of(watermarks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The watermarks that resolve to a video of ours, one per video, first found first."""
    return list({w["video_id"]: w for w in reversed(watermarks) if w["video_id"]}.values())[::-1]


def _worst(videos: list[dict[str, Any]]) -> dict[str, Any]:
    """The video whose status is the worst (the first found of equals)."""
    return max(videos, key=lambda w: status_severity(w["status"]))


def _spliced(videos: list[dict[str, Any]]) -> str:
    named = ", ".join(f"{w['video_id']} ({(w['status'] or {}).get('status', 'status unknown')})" for w in videos)
    worst = _worst(videos)
    worst_id = worst["video_id"]
    return (
        f"the frames carry the watermarks of {len(videos)} videos: {named}; the worst status, {worst_id}'s, is reported"
    )


def _failures_of(results: Any) -> list[Failure]:
    """Failure entries of a validation-results object (2.x shape) or status list (1.x shape)."""
    found: list[Failure] = []
    if isinstance(results, dict):
        active = results.get("activeManifest")
        entries = active.get("failure", []) if isinstance(active, dict) else []
    elif isinstance(results, list):
        entries = results
    else:
        entries = []
    for entry in entries:
        if isinstance(entry, dict) and entry.get("code"):
            found.append(Failure(str(entry["code"]), str(entry.get("explanation", "")), entry.get("url")))
    return found


def _successes_of(results: Any) -> set[str]:
    return set(_codes(results, "success"))


def _state_from(failures: list[str], successes: set[str]) -> State:
    if any(code != _UNTRUSTED for code in failures):
        return "Invalid"
    if _UNTRUSTED in failures or _TRUSTED not in successes:
        return "Valid"
    return "Trusted"


def _assertion(manifest: dict[str, Any], label: str) -> dict[str, Any] | None:
    for assertion in manifest.get("assertions", []) or []:
        if isinstance(assertion, dict) and assertion.get("label") == label:
            data = assertion.get("data")
            return data if isinstance(data, dict) else None
    return None


def _video_id_of(manifest: dict[str, Any]) -> str | None:
    log = _assertion(manifest, LOG_ASSERTION)
    value = log.get("video_id") if log else None
    return str(value) if value else None


def _signer_of(manifest: dict[str, Any]) -> str | None:
    info = manifest.get("signature_info")
    name = info.get("common_name") if isinstance(info, dict) else None
    return str(name) if name else None


def _ingredient_deltas(store: dict[str, Any]) -> dict[str, tuple[list[Failure], set[str]]]:
    """Per ingredient assertion, how validating its manifest now (with today's anchors) differs from the
    results stored when the remix was made: new failures, and new successes (a signer trusted now)."""
    deltas: dict[str, tuple[list[Failure], set[str]]] = {}
    results = store.get("validation_results")
    for delta in (results.get("ingredientDeltas", []) if isinstance(results, dict) else []) or []:
        if not isinstance(delta, dict):
            continue
        uri = str(delta.get("ingredientAssertionURI", ""))
        changes = delta.get("validationDeltas") or {}
        failures = _failures_of([e for e in changes.get("failure", []) if isinstance(e, dict)])
        successes = {str(e.get("code")) for e in changes.get("success", []) if isinstance(e, dict)}
        deltas[uri] = (failures, successes)
    return deltas


def _walk_ingredients(store: dict[str, Any], manifest_label: str) -> list[IngredientReport]:
    manifests = store.get("manifests") or {}
    deltas = _ingredient_deltas(store)
    reports: list[IngredientReport] = []
    queue: list[tuple[str, int]] = [(manifest_label, 1)]
    seen = {manifest_label}
    while queue:
        label, depth = queue.pop(0)
        manifest = manifests.get(label) or {}
        for ingredient in manifest.get("ingredients", []) or []:
            if not isinstance(ingredient, dict):
                continue
            child = ingredient.get("active_manifest")
            results = ingredient.get("validation_results", ingredient.get("validation_status"))
            failures = _failures_of(results)
            assertion_uri = f"self#jumbf=/c2pa/{label}/c2pa.assertions/{ingredient.get('label', '')}"
            new_failures, now_succeeding = deltas.get(assertion_uri, ([], set()))
            failures += new_failures
            successes = _successes_of(results) | now_succeeding
            if _TRUSTED in now_succeeding:  # trusted by today's anchors, whatever the remix's signer knew
                failures = [f for f in failures if f.code != _UNTRUSTED]
            codes = list(dict.fromkeys(f.code for f in failures))
            child_manifest = manifests.get(child) if child else None
            if child_manifest is None:
                state: State = "Invalid" if codes else "NoManifest"
            else:
                state = _state_from(codes, successes)
            claimed = _video_id_of(child_manifest) if child_manifest else None
            ours = _parse_uuid(claimed) if state == "Trusted" else None
            reports.append(
                IngredientReport(
                    depth=depth,
                    title=ingredient.get("title"),
                    relationship=ingredient.get("relationship"),
                    manifest_id=child,
                    state=state,
                    failures=tuple(codes),
                    video_id=str(ours) if ours else None,
                    signer=_signer_of(child_manifest) if child_manifest else None,
                    claimed_video_id=claimed,
                )
            )
            if child and child_manifest is not None and child not in seen and depth < _MAX_DEPTH:
                seen.add(child)
                queue.append((child, depth + 1))
    return reports


def _from_manifest(
    shown: str, container: Container, store: dict[str, Any], status_lookup: StatusLookup | None
) -> VerificationReport:
    label = str(store.get("active_manifest") or "")
    manifest = (store.get("manifests") or {}).get(label) or {}
    results = store.get("validation_results", store.get("validation_status"))
    details = _failures_of(results)
    codes = list(dict.fromkeys(f.code for f in details))
    raw_state = store.get("validation_state")
    state: State = raw_state if raw_state in _RANK else _state_from(codes, _successes_of(results))
    claimed = _video_id_of(manifest)
    # Only a trusted manifest speaks for our platform: an unanchored signer can name any of our videos.
    video_id = claimed if state == "Trusted" else None
    parsed_id = _parse_uuid(video_id)
    status = status_lookup.status(parsed_id) if status_lookup is not None and parsed_id else None
    signer = _signer_of(manifest)
    binding = _assertion(manifest, "c2pa.soft-binding")
    soft_binding = None
    if binding and binding.get("alg") and binding.get("blocks"):
        blocks = binding["blocks"]
        value = blocks[0].get("value") if isinstance(blocks, list) and blocks and isinstance(blocks[0], dict) else None
        if value:
            soft_binding = {"alg": str(binding["alg"]), "value": str(value)}
    ingredients = _walk_ingredients(store, label) if label else []
    successes = _codes(results, "success")
    signature = (store.get("_signatures") or {}).get(label)
    raw_info = manifest.get("signature_info")
    info: dict[str, Any] = raw_info if isinstance(raw_info, dict) else {}
    summary = f"signed by {signer or 'an unnamed signer'}"
    if codes:
        summary += f"; failures: {', '.join(codes)}"
    bad = [i for i in ingredients if i.state == "Invalid"]
    if bad:
        summary += f"; {len(bad)} ingredient(s) invalid ({', '.join(sorted({c for i in bad for c in i.failures}))})"
    return VerificationReport(
        path=shown,
        state=state,
        failures=tuple(codes),
        failure_details=tuple(details),
        reason=summary,
        container=container.name,
        ingredients=tuple(ingredients),
        manifest_id=label or None,
        video_id=video_id,
        status=status,
        recovered_by="manifest" if video_id else None,
        signer=signer,
        soft_binding=soft_binding,
        claimed_video_id=claimed,
        success_codes=successes,
        informational_codes=_codes(results, "informational"),
        actions=_actions_of(manifest),
        certificate=_certificate_of(signature, info),
        time_stamp=_time_stamp_of(signature, successes),
    )


def _development(
    report: VerificationReport,
    path: Path,
    container: Container,
    trust: TrustConfig | None,
    manifest_store: bytes | None,
) -> bool | None:
    """Whether the anchor that validated the signer is a development root (None when none validated it).

    Decided by our configured anchors, never by the name the signer gives itself. With development and
    production roots configured together, the file is read again against the development roots alone.
    """
    if report.state != "Trusted" or trust is None:
        return None
    kinds = trust.development_kinds()
    if len(kinds) == 1:
        return kinds.pop()
    again = _read_manifest(path, container, replace(trust, only_development=True), manifest_store)
    return isinstance(again, dict) and again.get("validation_state") == "Trusted"


def _distrusting(report: VerificationReport, store: dict[str, Any], trust: TrustConfig | None) -> VerificationReport:
    """Signers on the distrust list (a compromised key) make their manifest, and any remix of it, invalid."""
    distrusted = trust.distrusted() if trust is not None else []
    if not distrusted:
        return report
    signatures = store.get("_signatures") or {}

    def listed(label: str | None) -> Any:
        details = (signatures.get(label) or {}).get("certificateInfo") or {}
        serial, issuer = details.get("serialNumber"), details.get("issuer") or {}
        return next((d for d in distrusted if d.matches(serial, issuer)), None)

    ingredients = []
    for ingredient in report.ingredients:
        entry = listed(ingredient.manifest_id)
        if entry is not None:
            codes = (*ingredient.failures, SIGNER_DISTRUSTED)
            ingredient = replace(ingredient, state="Invalid", failures=codes)
        ingredients.append(ingredient)
    report = replace(report, ingredients=tuple(ingredients))
    entry = listed(report.manifest_id)
    if entry is None:
        return report
    since = f"is distrusted since {entry.distrusted_at}: {entry.reason}"
    why = f"signer {entry.subject} (serial {entry.serial_number}) {since}"
    return replace(
        report,
        state="Invalid",
        failures=(*report.failures, SIGNER_DISTRUSTED),
        failure_details=(*report.failure_details, Failure(SIGNER_DISTRUSTED, why)),
        reason=f"{report.reason}; {why}",
        video_id=None,
        status=None,
        recovered_by=None,
    )


def _with_watermark(
    report: VerificationReport, path: Path, container: Container, status_lookup: StatusLookup | None
) -> VerificationReport:
    """Read the watermark as well (it is cheap): the video it resolves to, and a conflict with the manifest.

    A stripped file re-signed by someone else keeps our watermark: the platform video, its status and the
    conflict are reported beside the new manifest.
    """
    if not container.is_video or status_lookup is None:
        return report
    try:
        payloads = decode_watermarks(path)
    except CredentialsError as exc:
        return replace(report, watermark_checked=True, watermark_error=str(exc))
    watermarks = _watermarks_of(payloads, status_lookup)
    report = replace(report, watermark_checked=True, watermarks=tuple(watermarks))
    videos = _videos_of(watermarks)
    if len(videos) > 1:
        return _with_spliced_watermarks(report, videos)
    marked = videos[0]["video_id"] if videos else None
    report = replace(report, watermark_video_id=marked)
    if marked is None:
        return report
    if report.video_id is None:
        status = videos[0]["status"]
        conflict = None
        if report.claimed_video_id and report.claimed_video_id != marked:
            conflict = f"the manifest claims video {report.claimed_video_id}; the watermark is video {marked}'s"
        return replace(report, video_id=marked, status=status, recovered_by="watermark", conflict=conflict)
    if report.video_id != marked:
        conflict = f"the manifest names video {report.video_id}; the watermark is video {marked}'s"
        return replace(report, conflict=conflict)
    return report


def _with_spliced_watermarks(report: VerificationReport, videos: list[dict[str, Any]]) -> VerificationReport:
    """The frames carry several videos' watermarks: a conflict naming each, and the worst status of all the videos
    named (the trusted manifest's too) is the one reported."""
    worst = _worst(videos)
    conflict = _spliced(videos)
    claimed = report.video_id or report.claimed_video_id
    if claimed and all(claimed != w["video_id"] for w in videos):
        says = "names" if report.video_id else "claims"
        conflict = f"the manifest {says} video {claimed}; {conflict}"
    report = replace(report, watermark_video_id=worst["video_id"], conflict=conflict)
    if report.video_id is not None and status_severity(report.status) >= status_severity(worst["status"]):
        return report
    return replace(report, video_id=worst["video_id"], status=worst["status"], recovered_by="watermark")


def _parse_uuid(value: str | None) -> UUID | None:
    if not value:
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


def read_manifest_store_json(manifest_store: bytes, trust: TrustConfig | None) -> dict[str, Any]:
    """The JSON of a stored manifest store on its own (no asset), for display by a resolver."""
    import c2pa

    with reading_context(trust) as context:
        reader = c2pa.Reader("application/c2pa", io.BytesIO(manifest_store), context=context)
        try:
            return dict(json.loads(reader.json()))
        finally:
            reader.close()
