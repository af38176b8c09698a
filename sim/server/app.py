# SPDX-License-Identifier: MIT
"""The reference server's HTTP application: the ingest endpoint and the JSON error shape.

create_app(db_path, clock=...) builds a FastAPI app around one Store. Other parts of the server
(alerts, dashboard) add their routers through `routers=` or app.include_router, and reach the
store and the clock as app.state.store and app.state.clock.

It must never answer client input with a 500: client faults are 4xx with
{"error": code, "detail": what was wrong and what to do}; an unexpected failure inside the
server is a 503 (the transaction was rolled back: retry later), never a stack trace.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from mimamori import clock as clocks
from mimamori import guard
from mimamori.ingest import (
    CONTENT_TYPE,
    MAX_BODY,
    Reject,
    check_signature,
    parse_authorization,
    parse_batch,
    parse_sv,
)
from mimamori.storage import Replayed, Store
from mimamori_firmware import protocol, record

log = logging.getLogger("mimamori.server")
RETRY_S = 60  # what a 503 asks the bulb to wait (it adds jitter)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    411: "length_required",
    413: "too_large",
    415: "unsupported_media_type",
    422: "bad_request",
}


class Ack(BaseModel):
    ack: int
    time_ms: int
    sv: int | None = None
    settings: dict[str, object] | None = None


class Error(BaseModel):
    error: str
    detail: str


def _error(status: int, error: str, detail: str, headers: dict[str, str] | None = None,
           **extra: object) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail, **extra}, status_code=status,
                        headers=headers)


def _reject(r: Reject) -> JSONResponse:
    headers = {"WWW-Authenticate": "Mimamori"} if r.status == 401 else None
    return JSONResponse(r.body(), status_code=r.status, headers=headers)


_BODY_DOC = (
    f"A {protocol.HEADER_SIZE}-byte batch header then `count` journal records of {record.SIZE} "
    "bytes each, exactly as in flash (see docs/protocol.md for the byte layout and worked "
    f"examples). At most {protocol.MAX_RECORDS} records ({MAX_BODY} bytes)."
)

_OPENAPI_EXTRA = {
    "requestBody": {
        "required": True,
        "description": _BODY_DOC,
        "content": {CONTENT_TYPE: {"schema": {"type": "string", "format": "binary",
                                              "maxLength": MAX_BODY}}},
    },
    "parameters": [
        {"name": "sv", "in": "query", "required": False,
         "description": "settings version the bulb has applied (0 if none)",
         "schema": {"type": "integer", "minimum": 0, "default": 0}},
        {"name": "Authorization", "in": "header", "required": True,
         "description": "Mimamori <device>:<hex HMAC-SHA256(key, METHOD SP PATH LF device LF "
                        "body)>, PATH with the query string exactly as sent",
         "schema": {"type": "string"}},
    ],
}

_ERRORS: dict[int | str, dict[str, object]] = {
    s: {"model": Error} for s in (400, 401, 409, 411, 413, 415)
}


# The ingest endpoint and the answers to errors: module-level, reading the store and the clock
# from app.state (create_app puts them there).


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = _STATUS_CODES.get(exc.status_code, "error")
    detail = exc.detail if isinstance(exc.detail, str) else code
    generic = detail == HTTPStatus(exc.status_code).phrase  # the router's, not a route's
    if exc.status_code == 404 and generic:
        detail = f"no such path {request.url.path}; bulbs post to {protocol.PATH}"
    elif exc.status_code == 405:
        allow = _allowed(request.app, request)
        headers = {**(getattr(exc, "headers", None) or {}), "Allow": ", ".join(allow)}
        if generic:
            detail = (f"{request.method} is not allowed here (only {', '.join(allow)}); "
                      f"bulbs POST to {protocol.PATH}")
        return _error(405, code, detail, headers=headers)
    return _error(exc.status_code, code, detail, headers=getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return _error(400, "bad_request", "; ".join(
        ".".join(str(p) for p in e.get("loc", ())) + ": " + str(e.get("msg"))
        for e in exc.errors()))


async def _gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
    # the client left mid-body: nobody reads the answer, nothing to log
    return _error(400, "bad_request", "the client disconnected before the body ended")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return _error(503, "server_error", "the server failed and changed nothing; retry later",
                  retry_s=RETRY_S)


ingest = APIRouter()


@ingest.post(protocol.PATH, response_model=Ack, response_model_exclude_none=True,
             responses=_ERRORS, openapi_extra=_OPENAPI_EXTRA, summary="Upload a batch")
async def post_batch(request: Request) -> JSONResponse:
    """Store the batch's records once and answer the acknowledged position."""
    store: Store = request.app.state.store
    clock: clocks.Clock = request.app.state.clock
    heard_ms = clocks.ms(clock)  # the request has arrived (its head, at least)
    try:
        body = await _read_body(request)
        scope = request.scope
        path = scope.get("raw_path") or scope["path"].encode()
        qs = scope.get("query_string", b"")
        path_qs = path + b"?" + qs if qs else path
        query = parse_qsl(qs.decode("latin-1"), keep_blank_values=True)
        auth = request.headers.get("authorization")
        out = await run_in_threadpool(_handle, store, clock, auth, path_qs, query, body,
                                      heard_ms)
        await _after_ingest(request.app, store, parse_authorization(auth)[0], _ingest_time(out))
    except Reject as r:
        return _reject(r)
    except ClientDisconnect:
        return _error(400, "bad_request", "the client disconnected before the body ended")
    except Exception:
        log.exception("ingest failed")
        return _error(503, "server_error",
                      "the server failed and changed nothing; retry later",
                      retry_s=RETRY_S)
    return JSONResponse(out)


@ingest.head(protocol.PATH, status_code=204, summary="The server's clock (Date header)")
async def head_batch(request: Request) -> Response:
    """The server's time in a Date header, for a bulb whose clock is behind the server's
    certificate (docs/firmware.md "The clock"); answers omit Date everywhere else."""
    return Response(status_code=204, headers={"date": formatdate(request.app.state.clock(),
                                                                usegmt=True)})


def create_app(db_path: str | Path, clock: clocks.Clock | None = None,
               routers: Iterable[APIRouter] = ()) -> FastAPI:
    store = Store.open(db_path)
    clock = clock or time.time
    docs = os.environ.get("MIMAMORI_DOCS", "") not in ("", "0")  # /docs loads a CDN's scripts
    app = FastAPI(title="Mimamori reference server", version="1",
                  description="Ingest of journal records from Mimamori bulbs.",
                  docs_url="/docs" if docs else None, redoc_url=None)
    app.state.store = store
    app.state.clock = clock
    # (store, device_id, now_ms) -> None, run after a batch commits (sweeper.on_ingest)
    app.state.after_ingest = []
    # (path prefix, gate) checked before any body is read (guard.Guard): the API's token
    app.state.gates = []

    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _gone)
    app.add_exception_handler(Exception, _unexpected)
    app.include_router(ingest)

    for r in routers:
        app.include_router(r)
    from mimamori import api  # households, watchers, alerts; the sweeper

    api.install(app)
    from mimamori.web import routes as web  # the dashboard pages

    web.install(app)
    from mimamori import ota_api  # firmware releases and rollouts

    ota_api.install(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    # byte limits, gates and the body deadline before any route reads a byte
    app.add_middleware(guard.Guard, limits=[(protocol.PATH, MAX_BODY),
                                            ("/api/v1/", guard.API_LIMIT)],
                       gates=app.state.gates, bare=(protocol.PATH, protocol.OTA_PATH))
    return app


_WHY = {400: "bad input: what was wrong and what to do", 401: "no valid token",
        403: "outside the token's scope", 404: "no such household, watcher, alert or pause",
        409: "conflicts with the current state (e.g. the alert is closed)",
        413: "the body is over the route's byte limit"}
_WHY_OTA = {401: "no valid device signature", 404: "no such release rolled out to this bulb"}


def _openapi(app: FastAPI) -> dict[str, object]:
    """FastAPI's document, with the answers the server really gives: 400 (never 422) for bad
    input, and on the JSON API 401, 403, 404, 409 and 413 in the {"error", "detail"} shape."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    doc = get_openapi(title=app.title, version=app.version, description=app.description,
                      routes=app.routes)
    err = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    doc.setdefault("components", {}).setdefault("schemas", {})["Error"] = \
        Error.model_json_schema()
    for path, ops in doc.get("paths", {}).items():
        for op in ops.values():
            rs = op.setdefault("responses", {})
            rs.pop("422", None)
            api = path.startswith("/api/v1/")
            ota = path.startswith(protocol.OTA_PATH)  # a bulb's signed GETs of its update
            codes = ((400, 401, 403, 404, 409, 413) if api else (400, 401, 404, 413) if ota
                     else (400, 413))
            for code in codes:
                why = _WHY_OTA.get(code, _WHY[code]) if ota else _WHY[code]
                rs.setdefault(str(code), {"description": why, "content": err})
            if path.startswith("/a/"):  # pages: the same statuses, as HTML
                for code in (400, 404, 409, 413):
                    rs[str(code)] = {"description": _WHY[code],
                                     "content": {"text/html": {"schema": {"type": "string"}}}}
    doc.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
    doc.get("components", {}).get("schemas", {}).pop("ValidationError", None)
    app.openapi_schema = doc
    return doc


def _allowed(app: FastAPI, request: Request) -> list[str]:
    """Every method some route takes at this path (Starlette's 405 names one route's only)."""
    from starlette.routing import Match

    return [m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
            if any(route.matches({**request.scope, "method": m})[0] == Match.FULL
                   for route in app.routes)]


def _ingest_time(out: dict[str, object]) -> int:
    t = out["time_ms"]
    assert isinstance(t, int)
    return t


async def _after_ingest(app: FastAPI, store: Store, device: str, now_ms: int) -> None:
    """Hooks after a committed batch; a failing hook is logged, the batch stays acknowledged."""
    for hook in app.state.after_ingest:
        try:
            await run_in_threadpool(hook, store, device, now_ms)
        except Exception:
            log.exception("after-ingest hook failed for %s (the batch is stored)", device)


async def _read_body(request: Request) -> bytes:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != CONTENT_TYPE:
        raise Reject(415, "unsupported_media_type",
                     f"Content-Type must be {CONTENT_TYPE} (got {ctype or 'none'})")
    length = request.headers.get("content-length")
    if length is None:
        raise Reject(411, "length_required", "send Content-Length (chunked bodies are refused)")
    if not length.isdigit() or len(length) > 12:
        raise Reject(400, "malformed", f"Content-Length {length!r} is not a number of bytes")
    if int(length) > MAX_BODY:
        raise Reject(413, "too_large", f"the body is {length} bytes; a batch is at most "
                     f"{MAX_BODY} bytes ({protocol.MAX_RECORDS} records): send fewer records")
    chunks = []
    got = 0
    async for chunk in request.stream():
        got += len(chunk)
        if got > MAX_BODY:
            raise Reject(413, "too_large", f"the body exceeds {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _handle(store: Store, clock: clocks.Clock, auth: str | None, path_qs: bytes,
            query: list[tuple[str, str]], body: bytes,
            heard_ms: int | None = None) -> dict[str, object]:
    device_id, sig = parse_authorization(auth)
    dev = store.device(device_id)
    check_signature(dev.key_bytes if dev else None, "POST", path_qs, device_id, body, sig)
    sv = parse_sv(query)
    batch = parse_batch(device_id, body)
    now_ms = clocks.ms(clock)
    try:
        got = store.ingest(batch, now_ms, heard_ms)
    except Replayed as e:
        raise Reject(409, "replayed", f"boot {batch.boot} req {batch.req} is not after the last "
                     f"accepted boot {e.last_boot} req {e.last_req} of epoch {e.epoch}: "
                     "this request was already seen; nothing was changed",
                     boot=e.last_boot, req=e.last_req) from None
    if got.conflicts:  # a bulb reused seqs: shown to the coordinator (bulb health, report)
        log.warning("device %s epoch %08x: %d records arrived with the seq of a stored record "
                    "but other content; kept apart (seq_conflicts), not used", device_id,
                    batch.epoch, got.conflicts)
    out: dict[str, object] = {"ack": got.ack, "time_ms": now_ms}
    if got.settings_version > sv:
        out["sv"] = got.settings_version
        out["settings"] = got.settings
    from mimamori import ota  # firmware updates (docs/ota.md): note fw, offer when due

    offer = ota.on_upload(store, device_id, ota.parse_fw(query), now_ms)
    if offer:
        out[protocol.OTA_KEY] = offer
    return out
