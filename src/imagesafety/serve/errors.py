"""Errors in the shape OpenAI's API uses: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def install_error_handlers(app) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return JSONResponse(error_body(exc.message, exc.type, exc.code, exc.param), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"invalid request: {first.get('msg', 'malformed body')}" + (f" at {where}" if where else "")
        return JSONResponse(
            error_body(message, "invalid_request_error", "invalid_body", where or None), status_code=400
        )

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        """The framework's own errors (a body it cannot parse: invalid UTF-8, nesting too deep; 404, 405) in the same
        shape."""
        detail = exc.detail if isinstance(exc.detail, str) else "invalid request"
        code = "invalid_body" if exc.status_code == 400 else ("not_found" if exc.status_code == 404 else None)
        return JSONResponse(
            error_body(detail, "invalid_request_error", code), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        return JSONResponse(
            error_body(f"internal error: {type(exc).__name__}", "server_error", "internal"), status_code=500
        )
