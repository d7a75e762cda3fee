"""``python -m certctl.agent.targets.reference``: the target reference page, generated from the option
models (``docs/reference/targets.md``; a test fails when the page and the models disagree)."""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from certctl.agent.targets import registry, secret_fields

HEADER = """# Deployment targets

Generated from the target types' option models (`make docs`); the API serves the same schemas at
`GET /api/v1/target-types`. Paths must be absolute; commands are argv lists run without a shell, and an
item holding a shell metacharacter is refused; unknown options are refused. Options marked *secret* are
sealed at rest, never returned by the API, and sent only to the agent that serves the target.

Every file-based target deploys the same way: per-path lock, skip when the installed files already hold
the same bytes, snapshot, temporary files in the same directories with the right owner and mode, check
the material (key matches certificate), atomic rename, the server's own config test, reload, TLS
verification of the served certificate, and on any failure the snapshot is restored and the service
reloaded again (`rolled_back`, or `rollback_failed` when that fails too). See
[the agent guide](../operator/agent.md).
"""


COMMON = {
    "key_path": "The private key, written 0600 unless a mode is configured.",
    "test_command": "The server's own config test, run after the switch and before the reload.",
    "reload_command": "Makes the running server pick up the new files.",
    "verify": "After the reload, connect here and check the served certificate's SHA-256 (with retries).",
    "snapshots": "How many previous versions of the files to keep for rollback (`keep`, default 3).",
}
FILE_MODE = "Owner, group and mode of the file; unset: the existing file's, else the target's default."


def _type_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " or ".join(f"`{a!r}`" for a in args)
    if origin in (Union, UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "object"
    if origin is Annotated:
        return _type_name(args[0])
    return str(getattr(annotation, "__name__", annotation))


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    factory = info.default_factory
    value = factory() if factory is not None else info.default  # type: ignore[call-arg]
    if isinstance(value, BaseModel):
        return "(defaults)"
    return f"`{value!r}`" if value is not None else "—"


def render() -> str:
    loaded, broken = registry()
    lines = [HEADER]
    for name in sorted(loaded):
        kind = loaded[name]
        secrets = secret_fields(name)
        lines.append(f"\n## `{name}`\n")
        agentless = "  \n*Agentless: served by a proxy agent.*" if kind.agentless else ""
        lines.append(kind.description + agentless)
        lines.append("\n| option | type | default | meaning |\n|---|---|---|---|")
        for field, info in kind.options_model.model_fields.items():
            meaning = " ".join((info.description or "").split()) or COMMON.get(field, "")
            if not meaning and field.endswith("_mode") and _type_name(info.annotation) == "FileMode":
                meaning = FILE_MODE
            meaning = meaning.replace("|", "\\|")
            if field in secrets:
                meaning = f"*secret.* {meaning}".strip()
            kind_name = _type_name(info.annotation).replace("|", "\\|")
            lines.append(f"| `{field}` | {kind_name} | {_default(info)} | {meaning} |")
    for name in sorted(broken):
        lines.append(f"\n## `{name}` (failed to load)\n\n{broken[name].error}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
