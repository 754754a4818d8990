"""A DEVELOPMENT RFC 3161 time-stamp authority: the real protocol, with the development PKI's TSA certificate.

Signing with a time-stamp is what keeps a Content Credential valid after its signing certificate expires.
Production signs against a real TSA (`PROVENANCE_TSA_URL`); the tests and the demo start this one on
127.0.0.1. It answers a DER `TimeStampReq` (`application/timestamp-query`, POSTed) with a granted
`TimeStampResp` (`application/timestamp-reply`): a CMS SignedData over a `TSTInfo` that holds the request's
message imprint and nonce and the time, signed (ES256) with signed attributes content type, message digest
and the ESS signing-certificate-v2 of the TSA certificate, whose chain it includes when asked to.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kernel.errors import InvalidInput

POLICY = "1.3.6.1.4.1.57264.99.1"
"""The policy this development TSA time-stamps under (an arbitrary OID in a private arc)."""
MAX_REQUEST = 64 * 1024


class TimestampAuthority:
    def __init__(self, chain_pem: bytes, key_pem: bytes, clock: Callable[[], dt.datetime] | None = None) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        self.chain = x509.load_pem_x509_certificates(chain_pem)
        self.key = load_pem_private_key(key_pem, password=None)
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.issued = 0

    @classmethod
    def from_directory(cls, directory: Path) -> TimestampAuthority:
        from provenance.credentials.pki import TSA_CHAIN_FILE, TSA_KEY_FILE

        return cls((directory / TSA_CHAIN_FILE).read_bytes(), (directory / TSA_KEY_FILE).read_bytes())

    def respond(self, request_der: bytes) -> bytes:
        """The DER `TimeStampResp` for a DER `TimeStampReq`: granted, or rejected with the reason."""
        from asn1crypto import cms, tsp

        class Response(tsp.TimeStampResp):  # RFC 3161: a rejection carries no token (asn1crypto requires one)
            _fields = [("status", tsp.PKIStatusInfo), ("time_stamp_token", cms.ContentInfo, {"optional": True})]

        try:
            request = tsp.TimeStampReq.load(request_der)
            imprint = request["message_imprint"]
            algorithm = imprint["hash_algorithm"]["algorithm"].native
            if algorithm not in ("sha256", "sha384", "sha512"):
                raise InvalidInput(f"hash algorithm {algorithm} is not accepted")
            token = self._token(request)
        except (ValueError, TypeError, KeyError, InvalidInput) as exc:
            return Response(
                {"status": {"status": "rejection", "status_string": [str(exc)[:200]], "fail_info": {"bad_request"}}}
            ).dump()
        self.issued += 1
        return Response({"status": {"status": "granted"}, "time_stamp_token": token}).dump()

    def _token(self, request: Any) -> Any:
        from asn1crypto import algos, cms, core, tsp, x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import Encoding

        certificates = [x509.Certificate.load(c.public_bytes(Encoding.DER)) for c in self.chain]
        tsa = certificates[0]
        info: dict[str, Any] = {
            "version": "v1",
            "policy": request["req_policy"].native or POLICY,
            "message_imprint": request["message_imprint"],
            "serial_number": secrets.randbits(63),
            "gen_time": self.clock().astimezone(dt.UTC).replace(microsecond=0),
            "accuracy": {"seconds": 1},
            "ordering": False,
        }
        if request["nonce"].native is not None:
            info["nonce"] = request["nonce"].native
        tst_info = tsp.TSTInfo(info).dump()
        signed_attrs = cms.CMSAttributes(
            [
                {"type": "content_type", "values": ["tst_info"]},
                {"type": "message_digest", "values": [hashlib.sha256(tst_info).digest()]},
                {
                    "type": "signing_certificate_v2",
                    "values": [
                        {
                            "certs": [
                                {
                                    "hash_algorithm": {"algorithm": "sha256"},
                                    "cert_hash": hashlib.sha256(tsa.dump()).digest(),
                                    "issuer_serial": {
                                        "issuer": [x509.GeneralName({"directory_name": tsa.issuer})],
                                        "serial_number": tsa.serial_number,
                                    },
                                }
                            ]
                        }
                    ],
                },
            ]
        )
        assert isinstance(self.key, ec.EllipticCurvePrivateKey)
        signature = self.key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
        signer = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    {"issuer_and_serial_number": {"issuer": tsa.issuer, "serial_number": tsa.serial_number}}
                ),
                "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "signed_attrs": signed_attrs,
                "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
                "signature": signature,
            }
        )
        signed_data = {
            "version": "v3",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": "tst_info", "content": core.ParsableOctetString(tst_info)},
            "signer_infos": [signer],
        }
        if request["cert_req"].native:
            signed_data["certificates"] = certificates
        return cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(signed_data)})


class _Handler(BaseHTTPRequestHandler):
    running: RunningAuthority

    def do_POST(self) -> None:
        if self.running.take_refusal():
            self.send_error(503, "the time-stamp authority is unavailable")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get_content_type() != "application/timestamp-query" or not 0 < length <= MAX_REQUEST:
            self.send_error(400, "POST one application/timestamp-query")
            return
        reply = self.running.authority.respond(self.rfile.read(length))
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *_: object) -> None:
        pass


class RunningAuthority:
    """A served authority: its URL, and a switch to refuse the next requests (an outage, for tests)."""

    def __init__(self, authority: TimestampAuthority) -> None:
        self.authority = authority
        self.url = ""
        self._refusals = 0
        self._lock = threading.Lock()

    def refuse(self, requests: int) -> None:
        """Answer the next `requests` requests with 503 (a large number: the authority is down)."""
        with self._lock:
            self._refusals = requests

    def take_refusal(self) -> bool:
        with self._lock:
            if self._refusals <= 0:
                return False
            self._refusals -= 1
            return True


@contextmanager
def serving(authority: TimestampAuthority, host: str = "127.0.0.1", port: int = 0) -> Iterator[RunningAuthority]:
    """Serve `authority` over HTTP on `host` in a thread; yields its URL and an outage switch."""
    running = RunningAuthority(authority)
    server = ThreadingHTTPServer((host, port), type("Handler", (_Handler,), {"running": running}))
    running.url = f"http://{host}:{server.server_address[1]}/tsa"
    thread = threading.Thread(target=server.serve_forever, name="timestamp-authority", daemon=True)
    thread.start()
    try:
        yield running
    finally:
        server.shutdown()
        server.server_close()
