"""The OpenAPI document as the service behaves: problem documents for errors, bearer tokens, file bodies, keys.

FastAPI describes what it can see in the signatures; the service also authenticates in a dependency, answers
every error with `application/problem+json`, takes files as raw bodies and reads `Idempotency-Key` from the
headers. This adds those to the generated document, so a generated client works against the real service.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from provenance.api.security import any_caller

PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "exit_code"],
    "properties": {
        "type": {"type": "string", "description": "urn:provenance:problem:<kind>"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "one line"},
        "exit_code": {"type": "integer", "description": "what the command line exits with for the same error"},
        "errors": {
            "type": "array",
            "description": "each field that broke the request's schema (422)",
            "items": {"type": "object", "properties": {"where": {"type": "string"}, "message": {"type": "string"}}},
        },
        "incident": {"type": "string"},
    },
}
COMMAND_SCOPES = frozenset({"write", "admin"})
"""Scopes of the endpoints that record a command, which an `Idempotency-Key` makes safe to retry."""


def install_document(app: FastAPI, routes: Sequence[BaseRoute], uploads: Mapping[str, Sequence[str]]) -> None:
    """Have `app` serve the completed document at `/openapi.json` (built once, on the first request); `routes`
    are the service's endpoints as their routers declare them."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app, routes, uploads)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI, routes: Sequence[BaseRoute], uploads: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    spec = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM
    for unused in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(unused, None)
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "a token from sign-in or `token create`"},
        "clientCredentials": {
            "type": "oauth2",
            "flows": {
                "clientCredentials": {"tokenUrl": "/auth/token", "scopes": {"verify": "", "fetch:manifests": ""}}
            },
        },
    }
    problem = {"description": "a problem (RFC 9457)", "content": {"application/problem+json": {"schema": _ref()}}}
    for operations in spec["paths"].values():
        for operation in operations.values():
            operation["responses"].pop("422", None)
            operation["responses"]["4XX"] = problem
    for route in routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = spec["paths"][route.path_format][method.lower()]
            scope = _scope_of(route)
            if scope is not None:
                operation["security"] = [{"bearer": []}, {"clientCredentials": []}]
            if method == "POST" and (scope in COMMAND_SCOPES or route.path_format == "/people"):
                operation.setdefault("parameters", []).append(_idempotency_key())
            if method == "POST" and route.path_format in uploads:
                binary = {"schema": {"type": "string", "format": "binary"}}
                operation["requestBody"] = {
                    "required": True,
                    "description": "the file itself, as the body",
                    "content": {media_type: binary for media_type in uploads[route.path_format]},
                }
    return spec


def _scope_of(route: APIRoute) -> str | None:
    """The token scope the route needs (`""` for any authenticated caller), or None for a public route."""
    for dependency in route.dependant.dependencies:
        access = getattr(dependency.call, "access", None)
        if access is not None:
            return str(access.scope)
        if dependency.call is any_caller:
            return ""
    return None


def _ref() -> dict[str, str]:
    return {"$ref": "#/components/schemas/Problem"}


def _idempotency_key() -> dict[str, Any]:
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "the caller's own key for this command: a retry with it records nothing twice",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,100}$"},
    }
