"""The one place c2pa `Context`s are built, so signing and reading agree on trust and never go online.

Every context turns off remote manifest fetching and OCSP: a file under verification must not make this
process contact a URL it names. Trust anchors replace the SDK's built-in list, so `Trusted` means
"chains to a root in our configuration" and nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provenance.credentials.trust import TrustConfig

if TYPE_CHECKING:
    import c2pa

    from provenance.credentials.pki import SigningIdentity

CLAIM_GENERATOR = "provenance"


def _claim_generator_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("provenance")
    except PackageNotFoundError:
        return "0"


def settings_for(trust: TrustConfig | None) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "verify": {
            "remote_manifest_fetch": False,
            "ocsp_fetch": False,
            "verify_after_reading": True,
            "verify_trust": True,
        },
        "builder": {
            "thumbnail": {"enabled": False},
            "claim_generator_info": {"name": CLAIM_GENERATOR, "version": _claim_generator_version()},
            "actions": {"auto_created_action": {"enabled": False}, "auto_opened_action": {"enabled": False}},
        },
    }
    if trust is not None:
        settings["trust"] = {"anchors": trust_anchors(trust)}
        if trust.only_development:
            # The re-read that asks whether a development root vouches for the signer: the first read checked
            # the time-stamp against every root, and the authority may be anchored by a production one.
            settings["verify"]["verify_timestamp_trust"] = False
    return settings


def trust_anchors(trust: TrustConfig) -> list[dict[str, str]]:
    """The SDK's current trust settings (`trust.anchors`, one list per kind; `trust.trust_anchors` is deprecated):
    our roots anchor both the claim signers and the time-stamp authorities."""
    pem = trust.anchors_pem()
    signers: dict[str, str] = {"trust_anchors": pem, "trust_kind": "manifest"}
    if trust.allowed_ekus:
        signers["trust_config"] = "\n".join(trust.allowed_ekus)
    return [signers, {"trust_anchors": pem, "trust_kind": "tsa"}]


def reading_context(trust: TrustConfig | None) -> c2pa.Context:
    """A context for reading: with no trust configured no anchor is set, so signers show as untrusted."""
    import c2pa

    return c2pa.Context.from_dict(settings_for(trust))


def signing_context(identity: SigningIdentity) -> c2pa.Context:
    import c2pa

    settings = settings_for(identity.trust)
    settings["verify"]["verify_after_sign"] = True
    return c2pa.Context.from_dict(settings)
