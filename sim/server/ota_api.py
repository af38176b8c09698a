# SPDX-License-Identifier: MIT
"""HTTP routes of firmware updates (docs/ota.md).

For bulbs, signed like a batch (protocol.sign over GET, the target as sent, the device, an
empty body): GET /v1/ota/{version}/manifest and /v1/ota/{version}/bundle?off=&len=.
For people, with the API's bearer token: GET /api/v1/releases, GET /api/v1/releases/{version}
(the rollout's progress), POST /api/v1/releases/{version}/rollout, GET /api/v1/ota (each bulb's
version and target, every update event with its reason).
It must never serve anything to a request whose signature it has not checked.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from mimamori import api, ota
from mimamori import clock as clocks
from mimamori.ingest import Reject, parse_authorization, signature_ok
from mimamori.storage import Store
from mimamori_firmware import protocol

_BYTES = "application/octet-stream"


class RolloutIn(BaseModel):
    bulbs: list[str] | None = Field(None, description="these bulbs; or none: a share of all")
    share: float | None = Field(None, description="0 < share <= 1 of all bulbs (default 1)")
    spread_h: float = Field(24.0, description="hours over which the bulbs' fetches start")


def _device(store: Store, request: Request) -> tuple[str, bytes]:
    """The signed GET's device and key; Reject(401) when it does not check."""
    device, sig = parse_authorization(request.headers.get("authorization"))
    dev = store.device(device)
    scope = request.scope
    path = scope.get("raw_path") or scope["path"].encode()
    qs = scope.get("query_string", b"")
    target = path + b"?" + qs if qs else path
    if dev is None or not signature_ok(dev.key_bytes, "GET", target, device, b"", sig):
        raise Reject(401, "bad_signature", "sign GET SP PATH?QUERY LF device LF (empty body) "
                     "with the device key (protocol.sign)")
    return device, dev.key_bytes


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


StoreDep = Annotated[Store, Depends(_store)]

bulbs = APIRouter(prefix=protocol.OTA_PATH.rstrip("/"), tags=["firmware updates (bulbs)"])


@bulbs.get("/{version}/manifest")
async def manifest(version: int, request: Request, store: StoreDep) -> Response:
    try:
        device, key = _device(store, request)
    except Reject as e:
        return JSONResponse(e.body(), status_code=e.status)
    body = await run_in_threadpool(ota.manifest_for, store, device, key, version)
    if body is None:
        raise HTTPException(404, f"release {version} is not rolled out to {device}")
    return Response(body, media_type=_BYTES)


@bulbs.get("/{version}/bundle")
async def bundle(version: int, off: int, len: int, request: Request,
                 store: StoreDep) -> Response:
    try:
        device, _ = _device(store, request)
    except Reject as e:
        return JSONResponse(e.body(), status_code=e.status)
    data = await run_in_threadpool(ota.piece, store, device, version, off, len)
    if data is None:
        raise HTTPException(404, f"release {version} bytes {off}+{len}: not rolled out to "
                            f"{device}, or outside the bundle, or over {protocol.PIECE}")
    return Response(data, media_type=_BYTES)


people = APIRouter(prefix="/api/v1", tags=["firmware updates"],
                   dependencies=[Depends(api.auth)])  # the API's bearer token


@people.get("/releases")
def list_releases(store: StoreDep) -> list[dict[str, Any]]:
    return [x.__dict__ for x in ota.releases(store)]


@people.get("/releases/{version}")
def release_progress(version: int, store: StoreDep) -> dict[str, Any]:
    return ota.progress(store, version)


@people.post("/releases/{version}/rollout")
def release_rollout(version: int, body: RolloutIn, request: Request,
                    store: StoreDep) -> dict[str, Any]:
    try:
        chosen = ota.rollout(store, version, clocks.ms(request.app.state.clock), body.bulbs,
                             body.share, body.spread_h)
    except ota.ReleaseError as e:
        raise HTTPException(400, str(e)) from None
    return {"version": version, "bulbs": chosen}


@people.get("/ota")
def ota_overview(store: StoreDep) -> dict[str, Any]:
    return {"bulbs": ota.bulbs(store), "events": ota.events(store)}


def install(app: FastAPI) -> None:
    store: Store = app.state.store
    ota.open_ota(store)
    app.include_router(bulbs)
    app.include_router(people)
