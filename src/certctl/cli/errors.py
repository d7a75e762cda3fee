"""Every CLI failure ends as one readable line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from certctl.errors import CertctlError


def fail(message: str, code: int = 1) -> typer.Exit:
    sys.stderr.write(f"error: {message}\n")
    return typer.Exit(code)


def run_guarded(app: typer.Typer, argv: Sequence[str]) -> None:
    try:
        app(args=list(argv), standalone_mode=True)
    except CertctlError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
