"""``certctl policies``: issuance policies, the rules every request is checked against before signing.

Rules come from a JSON file (``--file``): a list of rules, or an object whose ``rules`` holds that list
(so the output of ``certctl policies get REF -o json`` can be edited and fed back). The server validates
them and answers a bad rule with a one-line error naming it. ``violations`` lists the existing
certificates that break a policy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from certctl.cli.client import api_path
from certctl.cli.output import Column, emit, field, note, print_detail, text
from certctl.cli.resources.common import Api, CliError, UsageError, api_command, given, items_of
from certctl.cli.resources.files import read_text

app = typer.Typer(help="Issuance policies: rules that block or warn before signing.", no_args_is_help=True)

PAGE_MAX = 500
RULE_KEYS = ("type", "mode", "environments")

Ref = Annotated[str, typer.Argument(help="Policy id or name.", show_default=False)]
RulesFile = Annotated[
    Path | None,
    typer.Option("--file", help="JSON list of rules (or an object with 'rules').", show_default=False),
]
Enabled = Annotated[
    bool | None,
    typer.Option("--enabled/--disabled", help="Whether the policy is enforced.", show_default=False),
]


def _rule_types(item: Mapping[str, Any]) -> str:
    rules = item.get("rules")
    if not isinstance(rules, list):
        return "-"
    return text(
        [f"{rule.get('type')}({rule.get('mode', 'block')})" for rule in rules if isinstance(rule, dict)]
    )


POLICY_COLUMNS = (
    field("NAME", "name"),
    field("ENABLED", "enabled"),
    Column("RULES", _rule_types),
    field("DESCRIPTION", "description"),
    field("ID", "id"),
)
RULE_COLUMNS = (
    field("#", "number"),
    field("TYPE", "type"),
    field("MODE", "mode"),
    field("ENVIRONMENTS", "environments"),
    Column("SETTINGS", lambda rule: text({k: v for k, v in rule.items() if k not in (*RULE_KEYS, "number")})),
)
VIOLATION_COLUMNS = (
    field("CERTIFICATE", "name"),
    field("ENV", "environment"),
    field("STATUS", "status"),
    Column("VIOLATIONS", lambda item: "; ".join(str(v.get("message")) for v in item.get("violations", []))),
    field("ID", "certificate_id"),
)


def _table(items: list[dict[str, Any]], columns: tuple[Column, ...]) -> None:
    table = Table(box=None, pad_edge=False, show_edge=False)
    for column in columns:
        table.add_column(column.header, overflow="fold")
    for item in items:
        table.add_row(*(column.cell(item) for column in columns))
    emit(table)


def read_rules(path: Path) -> list[Any]:
    """The rule list of a ``--file``: a JSON list, or an object with a ``rules`` list."""
    try:
        data = json.loads(read_text(path, "rules"))
    except json.JSONDecodeError as exc:
        raise CliError(f"rules file {path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if isinstance(data, dict) and "rules" in data:
        data = data["rules"]
    if not isinstance(data, list):
        raise CliError(f"rules file {path} must hold a JSON list of rules (or an object with 'rules')")
    return data


def _show_policy(api: Api, policy: dict[str, Any]) -> None:
    if api.json:
        api.show(policy)
        return
    print_detail({k: v for k, v in policy.items() if k != "rules"})
    rules = policy.get("rules") or []
    _table([{"number": n, **rule} for n, rule in enumerate(rules, start=1)], RULE_COLUMNS)


@app.command("list")
@api_command
def list_policies(api: Api) -> None:
    """List policies."""
    answer = api.client.get(api_path("policies"))
    if api.json:
        api.show(answer)
    else:
        _table(items_of(answer), POLICY_COLUMNS)


@app.command("get")
@api_command
def get_policy(api: Api, ref: Ref) -> None:
    """Show one policy and its rules."""
    _show_policy(api, api.client.get(api_path("policies", ref)))


@app.command("create")
@api_command
def create_policy(
    api: Api,
    name: Annotated[str, typer.Option(help="Unique policy name.", show_default=False)],
    rules_file: RulesFile = None,
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    enabled: Enabled = None,
) -> None:
    """Create a policy (enabled unless --disabled)."""
    body: dict[str, Any] = {"name": name, "description": description}
    body["rules"] = read_rules(rules_file) if rules_file is not None else []
    body.update(given(enabled=enabled))
    _show_policy(api, api.client.post(api_path("policies"), body))


@app.command("update")
@api_command
def update_policy(
    api: Api,
    ref: Ref,
    name: Annotated[str | None, typer.Option(help="Rename the policy.")] = None,
    description: Annotated[str | None, typer.Option(help="Free text.")] = None,
    rules_file: RulesFile = None,
    enabled: Enabled = None,
) -> None:
    """Change a policy; --file replaces its whole rule list."""
    body: dict[str, Any] = given(name=name, description=description)
    if rules_file is not None:
        body["rules"] = read_rules(rules_file)
    body.update(given(enabled=enabled))
    if not body:
        raise UsageError("nothing to change; pass at least one option (see --help)")
    _show_policy(api, api.client.patch(api_path("policies", ref), body))


@app.command("delete")
@api_command
def delete_policy(api: Api, ref: Ref) -> None:
    """Delete a policy."""
    api.client.delete(api_path("policies", ref))
    note(f"deleted policy {ref}")


@app.command("violations")
@api_command
def policy_violations(
    api: Api,
    ref: Ref,
    limit: Annotated[int, typer.Option(min=1, max=PAGE_MAX, help="Page size.")] = 100,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow the cursor and fetch every page.")] = False,
) -> None:
    """List the existing certificates that break a policy (warn-mode rules included)."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    answer: dict[str, Any] = {}
    while True:
        answer = api.client.get(
            api_path("policies", ref, "violations"), params={"limit": limit, "cursor": cursor}
        )
        items.extend(items_of(answer))
        cursor = answer.get("next_cursor")
        if not all_pages or not cursor:
            break
    if api.json:
        api.show({"policy": answer.get("policy"), "items": items, "next_cursor": cursor})
        return
    _table(items, VIOLATION_COLUMNS)
    if cursor:
        note(f"showing the first {len(items)}; pass --all for every violation or raise --limit")
    elif not items:
        note(f"no certificate breaks policy {ref}")
