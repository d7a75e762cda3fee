"""``certctl profiles``: certificate profiles, the rules every issuance is checked against.

Rules come from a JSON file (``--file``, the API's ``rules`` object) and/or flags for the common
ones; flags win over the file. An update merges into the profile's current rules, because the API
replaces the whole rule set on PATCH.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from certctl.cli.client import api_path
from certctl.cli.output import note
from certctl.cli.resources.approvals import is_held, show_held
from certctl.cli.resources.common import Api, UsageError, api_command, given
from certctl.cli.resources.files import read_json_object

app = typer.Typer(help="Certificate profiles: key, lifetime, name and usage rules.", no_args_is_help=True)

DAY = 86400
SERVER_DEFAULT_TTL = 90 * DAY
ALGORITHMS = {"ecdsa": "ECDSA", "rsa": "RSA", "ed25519": "Ed25519"}

Ref = Annotated[str, typer.Argument(help="Profile id or name.", show_default=False)]
RulesFile = Annotated[
    Path | None, typer.Option("--file", help="JSON object of rules (the API's rules).", show_default=False)
]
MaxTtl = Annotated[int | None, typer.Option(min=1, help="Longest allowed lifetime.", show_default=False)]
DefaultTtl = Annotated[
    int | None, typer.Option(min=1, help="Lifetime when none is asked.", show_default=False)
]
KeyAlgorithms = Annotated[
    list[str] | None,
    typer.Option("--key-algorithm", help="ECDSA, RSA or Ed25519; repeatable.", show_default=False),
]
SanPatterns = Annotated[
    list[str] | None,
    typer.Option("--san-pattern", help="Allowed names, e.g. *.example.com; repeatable.", show_default=False),
]
ServerKeygen = Annotated[
    bool | None,
    typer.Option(
        "--allow-server-keygen/--no-allow-server-keygen",
        help="May the server generate keys.",
        show_default=False,
    ),
]


def _algorithms(values: list[str]) -> list[str]:
    chosen: list[str] = []
    for value in values:
        known = ALGORITHMS.get(value.strip().lower())
        if known is None:
            raise UsageError(f"--key-algorithm {value!r} is not one of ECDSA, RSA, Ed25519")
        if known not in chosen:
            chosen.append(known)
    return chosen


def _rules(
    base: dict[str, Any],
    *,
    max_ttl_days: int | None,
    default_ttl_days: int | None,
    key_algorithm: list[str] | None,
    san_pattern: list[str] | None,
    allow_server_keygen: bool | None,
) -> dict[str, Any]:
    """``base`` with the flags applied; a default lifetime above a new maximum is lowered to it."""
    rules = dict(base)
    if max_ttl_days is not None:
        rules["max_ttl_seconds"] = max_ttl_days * DAY
    if default_ttl_days is not None:
        rules["default_ttl_seconds"] = default_ttl_days * DAY
    elif max_ttl_days is not None:
        current_default = int(rules.get("default_ttl_seconds", SERVER_DEFAULT_TTL))
        rules["default_ttl_seconds"] = min(current_default, max_ttl_days * DAY)
    if key_algorithm:
        rules["allowed_key_algorithms"] = _algorithms(key_algorithm)
    if san_pattern:
        rules["san_patterns"] = list(san_pattern)
    if allow_server_keygen is not None:
        rules["allow_server_keygen"] = allow_server_keygen
    return rules


@app.command("list")
@api_command
def list_profiles(api: Api) -> None:
    """List profiles."""
    api.show(api.client.get(api_path("profiles")), kind="profile")


@app.command("get")
@api_command
def get_profile(api: Api, ref: Ref) -> None:
    """Show one profile and all its rules."""
    api.show(api.client.get(api_path("profiles", ref)))


@app.command("create")
@api_command
def create_profile(
    api: Api,
    name: Annotated[str, typer.Option(help="Unique profile name.", show_default=False)],
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    rules_file: RulesFile = None,
    max_ttl_days: MaxTtl = None,
    default_ttl_days: DefaultTtl = None,
    key_algorithm: KeyAlgorithms = None,
    san_pattern: SanPatterns = None,
    allow_server_keygen: ServerKeygen = None,
) -> None:
    """Create a profile; rules not given take the server's defaults."""
    base = read_json_object(rules_file, "rules") if rules_file is not None else {}
    rules = _rules(
        base,
        max_ttl_days=max_ttl_days,
        default_ttl_days=default_ttl_days,
        key_algorithm=key_algorithm,
        san_pattern=san_pattern,
        allow_server_keygen=allow_server_keygen,
    )
    api.show(
        api.client.post(api_path("profiles"), {"name": name, "description": description, "rules": rules})
    )


@app.command("update")
@api_command
def update_profile(
    api: Api,
    ref: Ref,
    name: Annotated[str | None, typer.Option(help="Rename the profile.")] = None,
    description: Annotated[str | None, typer.Option(help="Free text.")] = None,
    rules_file: RulesFile = None,
    max_ttl_days: MaxTtl = None,
    default_ttl_days: DefaultTtl = None,
    key_algorithm: KeyAlgorithms = None,
    san_pattern: SanPatterns = None,
    allow_server_keygen: ServerKeygen = None,
) -> None:
    """Change a profile; rules given are merged into its current rules."""
    body: dict[str, Any] = given(name=name, description=description)
    flags = (max_ttl_days, default_ttl_days, key_algorithm, san_pattern, allow_server_keygen)
    if rules_file is not None or any(flag is not None for flag in flags):
        current = api.client.get(api_path("profiles", ref))
        base = dict(current.get("rules") or {})
        if rules_file is not None:
            base.update(read_json_object(rules_file, "rules"))
        body["rules"] = _rules(
            base,
            max_ttl_days=max_ttl_days,
            default_ttl_days=default_ttl_days,
            key_algorithm=key_algorithm,
            san_pattern=san_pattern,
            allow_server_keygen=allow_server_keygen,
        )
    if not body:
        raise UsageError("nothing to change; pass at least one option (see --help)")
    answer = api.client.patch(api_path("profiles", ref), body)
    if is_held(answer):
        show_held(api, answer)
        return
    api.show(answer)


@app.command("delete")
@api_command
def delete_profile(api: Api, ref: Ref) -> None:
    """Delete a profile that no certificate uses."""
    answer = api.client.delete(api_path("profiles", ref))
    if is_held(answer):
        show_held(api, answer)
        return
    note(f"deleted profile {ref}")
