"""The registry of deployment target types.

Each type is a :class:`TargetType` registered under the ``certctl.targets`` entry point group: its
options model (which doubles as the JSON schema the API and CLI show) and a factory for its deployer.
The server validates options with the same models before storing them; the agent validates them again
before it acts. A type whose module fails to import is recorded as broken with its error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from certctl.agent.deploy.base import Deployer
from certctl.agent.targets.common import TargetOptions


class TargetConfigError(ValueError):
    """Options a target type cannot accept; the message is one readable line."""


@dataclass(frozen=True)
class TargetType:
    name: str
    description: str
    options_model: type[TargetOptions]
    build: Callable[[Any, Path], Deployer]
    """``build(options, state_dir)``: a deployer for one configured target. ``state_dir`` is the agent's
    private directory for this target (locks, snapshots)."""
    agentless: bool = False
    """Deployed by a proxy agent on behalf of the server (SSH, appliances, cloud)."""


@dataclass(frozen=True)
class BrokenType:
    name: str
    error: str


@cache
def registry() -> tuple[Mapping[str, TargetType], Mapping[str, BrokenType]]:
    loaded: dict[str, TargetType] = {}
    broken: dict[str, BrokenType] = {}
    for entry in entry_points(group="certctl.targets"):
        try:
            target_type = entry.load()
        except Exception as exc:  # a broken plugin must not take the others down
            broken[entry.name] = BrokenType(entry.name, f"{type(exc).__name__}: {exc}")
            continue
        if not isinstance(target_type, TargetType):
            broken[entry.name] = BrokenType(entry.name, "entry point is not a TargetType")
            continue
        loaded[entry.name] = target_type
    return loaded, broken


def target_type(name: str) -> TargetType:
    loaded, broken = registry()
    if name in broken:
        raise TargetConfigError(f"target type {name!r} failed to load: {broken[name].error}")
    if name not in loaded:
        known = ", ".join(sorted(loaded))
        raise TargetConfigError(f"unknown target type {name!r} (known: {known})")
    return loaded[name]


def parse_options(type_name: str, raw: Mapping[str, Any]) -> TargetOptions:
    """Validate options for one type; raises TargetConfigError with the first problem, named by field."""
    model = target_type(type_name).options_model
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "options"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise TargetConfigError(f"{type_name} option {where}: {message}") from None


def secret_fields(type_name: str) -> frozenset[str]:
    """Top-level options that hold secrets: stored sealed, never returned by the API."""
    model = target_type(type_name).options_model
    return frozenset(name for name, info in model.model_fields.items() if _is_secret(info.annotation))


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return SecretStr in getattr(annotation, "__args__", ())


def build_deployer(type_name: str, options: TargetOptions, *, state_dir: Path) -> Deployer:
    return target_type(type_name).build(options, state_dir)
