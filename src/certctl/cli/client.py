"""A small typed client for the certctl REST API (``/api/v1``), used by the operator CLI.

It owns the HTTPS connection (server URL, API key, trusted CA bundle, timeout) and turns every way a
call can fail into one :class:`ApiError` whose text is a single readable line: an RFC 9457 problem
document becomes ``"<status> <title>: <detail>"``, a network failure becomes ``"cannot reach <url>:
<reason>"``. The API key is sent only in the ``Authorization`` header and never appears in a message.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx2

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT = 30.0
_MAX_DETAIL = 500

Params = Mapping[str, str | int | list[str] | None]


class ApiError(Exception):
    """A call that did not succeed. ``status`` is the HTTP status, or ``None`` when no answer came."""

    def __init__(self, status: int | None, title: str, detail: str = "") -> None:
        self.status = status
        self.title = _one_line(title)
        self.detail = _one_line(detail)
        super().__init__(str(self))

    def __str__(self) -> str:
        head = f"{self.status} {self.title}" if self.status is not None else self.title
        if self.detail and self.detail.lower() != self.title.lower():
            return f"{head}: {self.detail}"
        return head


def _one_line(text: str) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= _MAX_DETAIL else flat[: _MAX_DETAIL - 3] + "..."


def api_path(*segments: str) -> str:
    """``/api/v1/<segment>/...`` with each segment percent-encoded (names may contain spaces or ``:``)."""
    return API_PREFIX + "".join("/" + quote(segment, safe="") for segment in segments)


def _verify(ca_bundle: Path | None) -> ssl.SSLContext | bool:
    if ca_bundle is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(ca_bundle))
    except FileNotFoundError:
        raise ApiError(None, f"CA bundle {ca_bundle} does not exist") from None
    except ssl.SSLError:
        raise ApiError(None, f"cannot load CA bundle {ca_bundle}: not a PEM CA certificate file") from None
    except OSError as exc:
        raise ApiError(
            None, f"cannot load CA bundle {ca_bundle}: {exc.strerror or type(exc).__name__}"
        ) from None


def _unreachable_reason(exc: httpx2.HTTPError, timeout: float) -> str:
    text = str(exc)
    lowered = text.lower()
    if isinstance(exc, httpx2.TimeoutException):
        return f"no answer within {timeout:g} s"
    if "certificate_verify_failed" in lowered or "certificate verify failed" in lowered:
        detail = "hostname mismatch" if "hostname" in lowered else "certificate not trusted"
        hint = "pass --ca-bundle with the server's CA (<data-dir>/tls/ca.crt)"
        return f"TLS verification failed ({detail}); {hint}"
    if "wrong version number" in lowered or "record layer failure" in lowered:
        return "TLS handshake failed (is the server speaking plain HTTP?)"
    if "refused" in lowered:
        return "connection refused"
    if (
        "name or service not known" in lowered
        or "nodename nor servname" in lowered
        or "getaddrinfo" in lowered
    ):
        return "host name not found"
    if "unreachable" in lowered:
        return "network unreachable"
    if isinstance(exc, httpx2.RemoteProtocolError):
        return "the server closed the connection unexpectedly"
    return text.splitlines()[0] if text.strip() else type(exc).__name__


def _error_from_response(response: httpx2.Response) -> ApiError:
    """Build the error from a problem document, or from the status line when the body is not one."""
    body: Any = None
    if "json" in response.headers.get("content-type", ""):
        try:
            body = response.json()
        except ValueError:
            body = None
    if isinstance(body, dict) and ("title" in body or "detail" in body):
        title = str(body.get("title") or response.reason_phrase or "error")
        return ApiError(response.status_code, title, str(body.get("detail") or ""))
    text = response.text.strip().splitlines()[0] if response.text.strip() else ""
    return ApiError(response.status_code, response.reason_phrase or "HTTP error", text[:200])


class ApiClient:
    """Synchronous JSON client over :class:`httpx2.Client`; use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        server: str,
        api_key: str | None,
        *,
        ca_bundle: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self._timeout = timeout
        self._api_key = api_key
        headers = {"Accept": "application/json, application/problem+json;q=0.9, */*;q=0.5"}
        if api_key is not None:
            if not api_key or not api_key.isascii() or not api_key.isprintable() or " " in api_key:
                raise ApiError(None, "the API key contains characters that cannot be sent in a header")
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx2.Client(
            base_url=self.server,
            headers=headers,
            verify=_verify(ca_bundle),
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _redact(self, error: ApiError) -> ApiError:
        """Defence in depth: no message ever carries the key, whatever the server or a library echoed."""
        key = self._api_key
        if key and (key in error.title or key in error.detail):
            return ApiError(error.status, error.title.replace(key, "***"), error.detail.replace(key, "***"))
        return error

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except ApiError as exc:
            raise self._redact(exc) from None
        except httpx2.InvalidURL:
            raise ApiError(None, f"server URL {self.server!r} is not valid") from None
        except httpx2.UnsupportedProtocol:
            raise ApiError(None, f"server URL {self.server!r} must start with https:// or http://") from None
        except httpx2.HTTPError as exc:
            reason = _unreachable_reason(exc, self._timeout)
            raise self._redact(ApiError(None, f"cannot reach {self.server}: {reason}")) from None

    def _send(
        self, method: str, path: str, *, params: Params | None = None, json: Any = None
    ) -> httpx2.Response:
        with self._guard():
            response = self._http.request(method, path, params=_clean(params), json=json)
            if not response.is_success:
                raise _error_from_response(response)
            return response

    def request_json(self, method: str, path: str, *, params: Params | None = None, json: Any = None) -> Any:
        """Send a request and return its parsed JSON body (``None`` for an empty answer such as 204)."""
        response = self._send(method, path, params=params, json=json)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                response.status_code, "the server answered with something that is not JSON"
            ) from None

    def get(self, path: str, *, params: Params | None = None) -> Any:
        return self.request_json("GET", path, params=params)

    def post(self, path: str, json: Any = None) -> Any:
        return self.request_json("POST", path, json=json)

    def patch(self, path: str, json: Any) -> Any:
        return self.request_json("PATCH", path, json=json)

    def delete(self, path: str) -> Any:
        return self.request_json("DELETE", path)

    def download(self, method: str, path: str, *, params: Params | None = None, json: Any = None) -> bytes:
        """Send a request and return the raw body (exports: PEM, PKCS#12)."""
        return self._send(method, path, params=params, json=json).content

    def stream_to(self, path: str, sink: BinaryIO, *, params: Params | None = None) -> int:
        """GET a possibly large body (audit export) straight into ``sink``; returns the bytes written."""
        written = 0
        with self._guard(), self._http.stream("GET", path, params=_clean(params)) as response:
            if not response.is_success:
                response.read()
                raise _error_from_response(response)
            for chunk in response.iter_bytes():
                sink.write(chunk)
                written += len(chunk)
        return written


def _clean(params: Params | None) -> dict[str, str | int | list[str]] | None:
    """Drop unset query parameters so the server applies its own defaults."""
    if params is None:
        return None
    return {key: value for key, value in params.items() if value is not None and value != []}
