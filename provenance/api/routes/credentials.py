"""Content Credentials over HTTP: the verification report, and the C2PA Soft Binding Resolution API.

The resolution endpoints follow the API's OpenAPI description (v1.1, C2PA 2.2): `matches/byBinding`
(GET and POST), `matches/byContent`, `manifests/{manifestId}` and `services/supportedAlgorithms`, with
`manifestId`, `endpoint` and `similarityScore` in each match. Each match also carries, in a field of its
own (`provenanceStatus`), the video's current status on this platform: published, taken down and why,
consent revoked.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from provenance.api.app import ApiContext, context
from provenance.api.routes.common import body_file
from provenance.api.security import ADMINISTRATOR, AUDITOR, MEMBER, PLATFORM, TRUST_AND_SAFETY, Principal, needs

router = APIRouter(tags=["content credentials"])

ANYONE = (MEMBER, TRUST_AND_SAFETY, AUDITOR, ADMINISTRATOR, PLATFORM)
MAX_RESULTS = 100


@router.post("/verify", summary="verify a file's Content Credentials (the body is the file); as `verify --json`")
async def verify(request: Request, caller: Annotated[Principal, Depends(needs("verify", *ANYONE))]) -> dict[str, Any]:
    from provenance.credentials.verify import verify_file
    from provenance.verification import ReadModelStatus

    ctx = context(request)
    async with body_file(request, ctx.system.work_dir, caller.subject) as path:
        reads = await run_in_threadpool(ctx.reads)
        report = await run_in_threadpool(verify_file, path, ctx.system.trust(), ReadModelStatus(reads))
    return report.to_json_as("(the uploaded file)")  # not the server's scratch path, anywhere in it


def _resolver(ctx: ApiContext) -> Any:
    from provenance.credentials.resolution import ManifestResolver
    from provenance.verification import ReadModelManifestIndex

    return ManifestResolver(ReadModelManifestIndex(ctx.reads()), ctx.system.blobs, ctx.system.trust())


def _matches(ctx: ApiContext, request: Request, found: Any) -> dict[str, Any]:
    """The API's body; content spliced from several signed videos (a `conflict`) lists the worst status first."""
    from provenance.credentials.verify import status_severity

    reads = ctx.system.reads
    endpoint = str(request.base_url).rstrip("/")
    matches = []
    for match in found.matches:
        video_id = reads.resolve(manifest_id=match.manifest_id)
        matches.append(
            {
                "manifestId": match.manifest_id,
                "endpoint": endpoint,
                "similarityScore": 100,
                "provenanceStatus": reads.status(video_id) if video_id else None,
            }
        )
    if found.conflict:
        matches.sort(key=lambda m: -status_severity(m["provenanceStatus"]))
        return {"matches": matches, "conflict": found.conflict}
    return {"matches": matches}


@router.get("/matches/byBinding", summary="manifests whose soft binding (watermark) has this value")
def matches_by_binding_query(
    request: Request,
    _: Annotated[Principal, Depends(needs("fetch:manifests", *ANYONE))],
    alg: Annotated[str, Query(min_length=1, max_length=200)],
    value: Annotated[str, Query(min_length=1, max_length=10_000)],
    max_results: Annotated[int, Query(alias="maxResults", ge=1, le=MAX_RESULTS)] = 10,
) -> dict[str, Any]:
    ctx = context(request)
    return _matches(ctx, request, _resolver(ctx).matches_by_binding(alg, value, max_results))


class BindingQuery(BaseModel):
    alg: str = Field(min_length=1, max_length=200)
    value: str = Field(min_length=1, max_length=10_000)


@router.post("/matches/byBinding", summary="as GET, with the binding in the body")
def matches_by_binding(
    body: BindingQuery,
    request: Request,
    _: Annotated[Principal, Depends(needs("fetch:manifests", *ANYONE))],
    max_results: Annotated[int, Query(alias="maxResults", ge=1, le=MAX_RESULTS)] = 10,
) -> dict[str, Any]:
    ctx = context(request)
    return _matches(ctx, request, _resolver(ctx).matches_by_binding(body.alg, body.value, max_results))


@router.post("/matches/byContent", summary="manifests for an asset (the body): exact content, then its watermark")
async def matches_by_content(
    request: Request,
    caller: Annotated[Principal, Depends(needs("fetch:manifests", *ANYONE))],
    alg: Annotated[str | None, Query(max_length=200)] = None,
    hint_alg: Annotated[str | None, Query(alias="hintAlg", max_length=200)] = None,
    hint_value: Annotated[str | None, Query(alias="hintValue", max_length=10_000)] = None,
    max_results: Annotated[int, Query(alias="maxResults", ge=1, le=MAX_RESULTS)] = 10,
) -> dict[str, Any]:
    from kernel.errors import InvalidInput
    from provenance.credentials.watermark import ALG

    if alg is not None and alg != ALG:
        raise InvalidInput(f"alg {alg!r} is not supported here (see /services/supportedAlgorithms)")
    ctx = context(request)
    async with body_file(request, ctx.system.work_dir, caller.subject) as path:
        resolver = await run_in_threadpool(_resolver, ctx)
        found = await run_in_threadpool(resolver.matches_by_content, path, max_results)
    if not found.matches and hint_alg and hint_value:
        found = await run_in_threadpool(resolver.matches_by_binding, hint_alg, hint_value, max_results)
    return await run_in_threadpool(_matches, ctx, request, found)


@router.get(
    "/manifests/{manifest_id:path}",
    summary="a stored manifest store (application/c2pa)",
    response_class=Response,
    responses={200: {"content": {"application/c2pa": {}}}},
)
def manifest(
    manifest_id: str,
    request: Request,
    _: Annotated[Principal, Depends(needs("fetch:manifests", *ANYONE))],
    return_active_manifest: Annotated[bool, Query(alias="returnActiveManifest")] = False,
) -> Response:
    from provenance.credentials.resolution import MANIFEST_MEDIA_TYPE

    # The store of a signed video holds its active manifest (and its ingredients'): both answers are it.
    del return_active_manifest
    data = _resolver(context(request)).manifest(manifest_id[:500])
    return Response(data, media_type=MANIFEST_MEDIA_TYPE)


@router.get("/services/supportedAlgorithms", summary="the soft-binding algorithms this service resolves")
def supported_algorithms(_: Annotated[Principal, Depends(needs("fetch:manifests", *ANYONE))]) -> dict[str, Any]:
    from provenance.credentials.watermark import ALG

    return {"watermarks": [{"alg": ALG}], "fingerprints": []}
