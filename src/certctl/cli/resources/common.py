"""What every resource command shares: connection options, the :class:`Api` handle, error handling.

:func:`api_command` turns ``def cmd(api: Api, ...)`` into a Typer command that also accepts
``--server``, ``--api-key``, ``--ca-bundle`` and ``--output`` (each with its ``CERTCTL_*``
environment variable), builds the client, runs the body, and turns every expected failure (API
errors, bad local input, unreadable files) into one ``error: ...`` line on stderr and exit code 1,
or 2 for usage mistakes, so an operator never sees a traceback.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Concatenate, ParamSpec, cast

import typer

from certctl.cli.client import ApiClient, ApiError
from certctl.cli.output import OutputFormat, show
from certctl.pki.errors import PkiError

P = ParamSpec("P")

DEFAULT_SERVER = "https://127.0.0.1:8443"
DEFAULT_CA_BUNDLE = Path("certctl-data") / "tls" / "ca.crt"
_CONNECTION = "Connection"


class CliError(Exception):
    """A local problem (bad input, missing file, wrong combination of options) with a safe message."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class UsageError(CliError):
    """Options that cannot work together or a missing required value: exit code 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)


@dataclass
class Api:
    """The handle a command body gets: the connected client and the chosen rendering."""

    client: ApiClient
    output: OutputFormat

    @property
    def json(self) -> bool:
        return self.output is OutputFormat.JSON

    def show(self, data: Any, *, kind: str | None = None) -> None:
        show(data, self.output, kind=kind)


ServerOption = Annotated[
    str,
    typer.Option(
        "--server",
        envvar="CERTCTL_SERVER",
        help="Base URL of the certctl server.",
        rich_help_panel=_CONNECTION,
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="CERTCTL_API_KEY",
        help="API key (prefer the environment variable: command lines are visible to other users).",
        show_default=False,
        rich_help_panel=_CONNECTION,
    ),
]
CaBundleOption = Annotated[
    Path | None,
    typer.Option(
        "--ca-bundle",
        envvar="CERTCTL_CA_BUNDLE",
        help=f"CA certificate(s) to trust for the server. Default: {DEFAULT_CA_BUNDLE} if present, "
        "else the system trust store.",
        show_default=False,
        rich_help_panel=_CONNECTION,
    ),
]
OutputOption = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", envvar="CERTCTL_OUTPUT", help="Rendering.", rich_help_panel=_CONNECTION),
]

_COMMON: tuple[inspect.Parameter, ...] = (
    inspect.Parameter(
        "server", inspect.Parameter.KEYWORD_ONLY, default=DEFAULT_SERVER, annotation=ServerOption
    ),
    inspect.Parameter("api_key", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ApiKeyOption),
    inspect.Parameter("ca_bundle", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=CaBundleOption),
    inspect.Parameter(
        "output", inspect.Parameter.KEYWORD_ONLY, default=OutputFormat.TABLE, annotation=OutputOption
    ),
)


def connect(server: str, api_key: str | None, ca_bundle: Path | None) -> ApiClient:
    """Build the client from the connection options, applying the documented defaults."""
    if not server.startswith(("https://", "http://")):
        raise UsageError(f"--server {server!r} must be an https:// URL")
    if not api_key:
        raise UsageError("no API key: set CERTCTL_API_KEY (or pass --api-key)")
    if ca_bundle is None and DEFAULT_CA_BUNDLE.is_file():
        ca_bundle = DEFAULT_CA_BUNDLE
    return ApiClient(server, api_key, ca_bundle=ca_bundle)


def fail(message: str, exit_code: int = 1) -> typer.Exit:
    """Print the one error line and return the exit to raise."""
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    sys.stderr.flush()
    return typer.Exit(exit_code)


def describe_os_error(exc: OSError) -> str:
    """``path: reason`` for a failed local file operation (no errno noise, no traceback)."""
    reason = (exc.strerror or type(exc).__name__).lower()
    return f"{exc.filename}: {reason}" if exc.filename else reason


def run_guarded(body: Callable[[], None]) -> None:
    """Run a command body, converting expected failures into one line and an exit code."""
    try:
        body()
    except ApiError as exc:
        raise fail(str(exc)) from None
    except CliError as exc:
        raise fail(exc.message, exc.exit_code) from None
    except PkiError as exc:
        raise fail(exc.message) from None
    except BrokenPipeError:
        raise typer.Exit(1) from None
    except OSError as exc:
        raise fail(describe_os_error(exc)) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None


def api_command(func: Callable[Concatenate[Api, P], None]) -> Callable[..., None]:
    """Make ``func(api, ...)`` a Typer callback with the connection options and error handling added."""
    original = inspect.signature(func, eval_str=True)
    own = list(original.parameters.values())[1:]
    call = cast(Callable[..., None], func)

    @functools.wraps(func)
    def command(**kwargs: Any) -> None:
        server, api_key = kwargs.pop("server"), kwargs.pop("api_key")
        ca_bundle, output = kwargs.pop("ca_bundle"), kwargs.pop("output")

        def body() -> None:
            with connect(server, api_key, ca_bundle) as client:
                call(Api(client=client, output=output), **kwargs)

        run_guarded(body)

    command.__signature__ = original.replace(parameters=[*own, *_COMMON])  # type: ignore[attr-defined]
    command.__annotations__ = {}
    return command


def parse_pairs(values: Iterable[str], what: str) -> dict[str, str]:
    """``key=value`` options (``--tag``, ``--option``) as a dict; a malformed one is a usage error."""
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{what} {item!r} is not key=value")
        pairs[key.strip()] = value
    return pairs


def items_of(answer: Any) -> list[dict[str, Any]]:
    """The ``items`` of a list answer, checked."""
    if not isinstance(answer, Mapping) or not isinstance(answer.get("items"), list):
        raise ApiError(None, "the server's answer is not a list of items")
    return list(answer["items"])


def given(**fields: Any) -> dict[str, Any]:
    """The fields the user actually gave (options left at None are not sent, so the server keeps them)."""
    return {key: value for key, value in fields.items() if value is not None}
