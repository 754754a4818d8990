"""The HTTP service and its accounts, run by the operator on the server machine: `api`, `admin init`,
`token create|revoke`, `client create|revoke`.

These act as the operator (`system:operator` on record): whoever can run them can read the data directory and
the databases, which already gives every power; the service's callers are authenticated instead.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from typing import TYPE_CHECKING

from kernel.errors import InvalidInput
from provenance.cli.handlers.common import parse_expiry, read_file

if TYPE_CHECKING:
    from provenance.api.accounts import Accounts
    from provenance.bootstrap import System


def _accounts(system: System) -> Accounts:
    from kernel.errors import require

    require("argon2", "api")
    from provenance.api.accounts import Accounts

    system.settings.home.mkdir(parents=True, exist_ok=True)
    return Accounts(system.settings.keys_database)


def api(system: System, args: argparse.Namespace) -> int:
    from kernel.errors import require

    require("fastapi", "api")
    require("uvicorn", "api")
    import uvicorn

    from provenance.api.app import create_app
    from provenance.api.connections import guarded
    from provenance.logs import configure_logging

    configure_logging(system.settings)
    if not 0 <= args.port <= 65535:
        raise InvalidInput(f"--port must be 0 to 65535, not {args.port}")
    listening = _listening(args.host, args.port)  # before anything starts: a port in use is one line, exit 2
    app = create_app(system, _accounts(system))
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        server_header=False,
        proxy_headers=False,
        limit_concurrency=1000,
        timeout_keep_alive=5,
        http=guarded(system.settings.api_connections_per_address),
    )
    uvicorn.Server(config).run(sockets=[listening])
    return 0


def _listening(host: str, port: int) -> socket.socket:
    """A socket bound to the address and listening, or `InvalidInput` saying why it cannot be."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        # create_server's own message adds the address again; a name that does not resolve has no errno of its own
        why = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
        raise InvalidInput(f"cannot listen on {host}:{port}: {why}") from None


def admin_init(system: System, args: argparse.Namespace) -> int:
    """Create (or promote) an administrator and set their password."""
    from provenance.application.service import OPERATOR
    from provenance.domain.person import person_id_for

    accounts = _accounts(system)
    try:
        if args.password_file:
            password = read_file(args.password_file, 1024).decode("utf-8", "replace").strip()
            generated = False
        else:
            password, generated = secrets.token_urlsafe(18), True
        app = system.app
        person_id = person_id_for(args.handle)
        if not app.exists(person_id):
            app.register_person(args.handle, args.name or "", ["member"])
        app.change_role(OPERATOR, person_id, "administrator", grant=True)
        accounts.set_password(str(person_id), password)
        print(f"{app.person(person_id).handle} is an administrator", file=sys.stderr)
        if generated:
            print(password)
            print("(the password above is shown once; change it by running this again)", file=sys.stderr)
    finally:
        accounts.close()
    return 0


def token_create(system: System, args: argparse.Namespace) -> int:
    """A bearer token for a person, printed once."""
    from datetime import UTC, datetime

    from provenance.api.accounts import check_scopes
    from provenance.api.security import person_scopes

    person = system.app.person_by_handle(args.handle)
    expires = parse_expiry(args.expires or "30d")
    assert expires is not None
    ttl = (expires - datetime.now(UTC)).total_seconds()
    allowed = person_scopes(frozenset(person.roles))
    scopes = check_scopes(args.scope) if args.scope else allowed
    if not scopes <= allowed:
        raise InvalidInput(f"{person.handle} may have the scopes {', '.join(sorted(allowed))}")
    accounts = _accounts(system)
    try:
        secret, token = accounts.issue("person", str(person.id), scopes, ttl)
    finally:
        accounts.close()
    print(secret)
    what = f"scopes {' '.join(sorted(scopes))}, expires {expires.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    print(f"token {token.token_id} for {person.handle}, {what}", file=sys.stderr)
    return 0


def token_revoke(system: System, args: argparse.Namespace) -> int:
    accounts = _accounts(system)
    try:
        accounts.revoke(args.token_id)
    finally:
        accounts.close()
    print(f"revoked token {args.token_id}")
    return 0


def client_create(system: System, args: argparse.Namespace) -> int:
    """A platform's API client (OAuth2 client credentials); its id and secret, printed once."""
    accounts = _accounts(system)
    try:
        client_id, secret = accounts.create_client(args.name, args.scope or ())
    finally:
        accounts.close()
    print(client_id)
    print(secret)
    return 0
