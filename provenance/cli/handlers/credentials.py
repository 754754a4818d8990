"""Content Credentials: `pki init`, `verify FILE`, `resolve`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from kernel.errors import InvalidInput
from provenance.cli import render
from provenance.cli.handlers.common import emit, show

if TYPE_CHECKING:
    from provenance.bootstrap import System


def pki_init(system: System, args: argparse.Namespace) -> int:
    from provenance.credentials.pki import create_development_pki

    directory = Path(args.dir) if args.dir else system.settings.pki_directory
    create_development_pki(directory, overwrite=args.force)
    emit(render.render_development_pki(directory))
    return 0


def pki_rotate(system: System, args: argparse.Namespace) -> int:
    """A new development signer; the old one's root stays among the anchors, so its files keep verifying."""
    from provenance.credentials.pki import rotate_development_pki

    rotated = rotate_development_pki(Path(args.dir) if args.dir else system.settings.pki_directory)
    print(f"signing now as {rotated.signer} (sha256 {rotated.certificate_fingerprint});")
    print("files signed before still verify: the old root stays a trust anchor (distrust the old signer to stop)")
    return 0


def pki_distrust(system: System, args: argparse.Namespace) -> int:
    """Distrust a signing certificate: every file it signed then verifies Invalid; lists the platform's."""
    from provenance.credentials.pki import distrust_signer

    entry = distrust_signer(system.settings.trust_anchor_file.parent, Path(args.certificate), args.reason)
    system.catch_up()
    affected = system.reads.videos_signed_by(entry.fingerprint)
    print(f"distrusted {entry.subject} (serial {entry.serial_number}): {len(affected)} platform video(s) signed by it")
    emit(affected)
    return 0


def verify(system: System, args: argparse.Namespace) -> int:
    """Exit 0 only when the whole chain is `Trusted` and the watermark does not name another video."""
    from provenance.credentials.verify import verify_file
    from provenance.verification import ReadModelStatus

    file = Path(args.file)
    if not file.is_file():
        raise InvalidInput(f"no such file: {args.file!r}")
    system.catch_up()
    trust = system.trust()
    report = verify_file(file, trust, ReadModelStatus(system.reads)).to_json()
    show(args, report, lambda: render.render_verification(report, trusted_anchors=trust is not None))
    return 0 if report["chain_state"] == "Trusted" and not report["conflict"] else 1


def resolve(system: System, args: argparse.Namespace) -> int:
    from provenance.credentials.resolution import ManifestResolver
    from provenance.verification import ReadModelManifestIndex

    system.catch_up()
    resolver = ManifestResolver(ReadModelManifestIndex(system.reads), system.blobs, system.trust())
    if args.manifest:
        out = Path(args.output or f"{args.manifest.replace(':', '_')}.c2pa")
        out.write_bytes(resolver.manifest(args.manifest))
        print(out)
        return 0
    if args.binding:
        alg, _, value = args.binding.partition(":")
        matches = resolver.matches_by_binding(alg, value)
    elif args.file:
        matches = resolver.matches_by_content(Path(args.file))
    else:
        raise InvalidInput("give a FILE, --binding ALG:VALUE or --manifest ID")
    render.print_json(matches.to_json())
    return 0
