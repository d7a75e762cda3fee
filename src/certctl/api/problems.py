"""RFC 9457 problem documents: every error leaves the API in this one shape, mapped in one place."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from certctl.errors import PROBLEM_BASE, CertctlError

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("certctl.api")


def problem_response(
    *, status: int, problem: str, title: str, detail: str, instance: str, extra: dict[str, Any] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + problem,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if extra:
        body.update(extra)
    headers = {"WWW-Authenticate": 'Bearer realm="certctl"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _validation_detail(exc: RequestValidationError) -> tuple[str, str, int, list[dict[str, Any]]]:
    errors: list[dict[str, Any]] = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        errors.append(
            {"field": location, "message": str(error.get("msg", "")), "code": str(error.get("type"))}
        )
    if any(e["code"] == "json_invalid" for e in errors):
        return "malformed-json", "The request body is not valid JSON", 400, errors
    parts = [f"{e['field'] or 'body'}: {e['message']}" for e in errors[:5]]
    return "validation-error", "The request is not valid", 422, errors if parts else []


def install(app: FastAPI) -> None:
    @app.exception_handler(CertctlError)
    async def _certctl_error(request: Request, exc: CertctlError) -> JSONResponse:
        return problem_response(
            status=exc.status,
            problem=exc.problem,
            title=exc.title,
            detail=exc.message,
            instance=request.url.path,
            extra=exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problem, title, status, errors = _validation_detail(exc)
        detail = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors[:5]) or title
        return problem_response(
            status=status,
            problem=problem,
            title=title,
            detail=detail,
            instance=request.url.path,
            extra={"errors": errors},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {404: "not-found", 405: "method-not-allowed", 406: "not-acceptable", 413: "payload-too-large"}
        return problem_response(
            status=exc.status_code,
            problem=names.get(exc.status_code, "http-error"),
            title=str(exc.detail) if exc.status_code != 404 else "Not found",
            detail=str(exc.detail),
            instance=request.url.path,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(
            status=500,
            problem="internal-error",
            title="Internal error",
            detail="the server could not complete the request; the error has been logged",
            instance=request.url.path,
        )
