"""In-process API harness: the real ASGI app over the real database, driven by Starlette's TestClient."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.testclient import TestClient

from certctl.api.app import create_app
from certctl.auth.config import IdentityConfig
from certctl.keys.envelope import MasterKey
from certctl.services.audit import SYSTEM
from certctl.services.container import Services, build_services
from certctl.store.db import make_engine
from support.seed import seed_minimal

T = TypeVar("T")
BOOTSTRAP_TOKEN = "bootstrap-" + "x7Kq2mP9vL4nR8sT"


@dataclass
class ApiHarness:
    client: TestClient
    services: Services
    admin_key: str
    seeded: dict[str, Any]
    database_url: str
    keys: dict[str, str] = field(default_factory=dict)

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine on the app's event loop (where the engine's connections live)."""
        assert self.client.portal is not None
        return self.client.portal.call(fn)

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.admin_key}"}

    def key_for(self, role: str) -> str:
        if role not in self.keys:
            created = self.run(
                lambda: self.services.api_keys.create(
                    name=f"test-{role}", roles=[role], expires_in=None, actor=SYSTEM
                )
            )
            self.keys[role] = created.secret
        return self.keys[role]

    def get(self, path: str, key: str | None = None, **kwargs: Any) -> Any:
        headers = self.headers(key) | kwargs.pop("headers", {})
        return self.client.get(path, headers=headers, **kwargs)

    def post(self, path: str, key: str | None = None, **kwargs: Any) -> Any:
        headers = self.headers(key) | kwargs.pop("headers", {})
        return self.client.post(path, headers=headers, **kwargs)

    def patch(self, path: str, key: str | None = None, **kwargs: Any) -> Any:
        headers = self.headers(key) | kwargs.pop("headers", {})
        return self.client.patch(path, headers=headers, **kwargs)

    def delete(self, path: str, key: str | None = None, **kwargs: Any) -> Any:
        headers = self.headers(key) | kwargs.pop("headers", {})
        return self.client.delete(path, headers=headers, **kwargs)


@contextmanager
def make_harness(
    database_url: str,
    *,
    bootstrap_token: str | None = BOOTSTRAP_TOKEN,
    seed_admin: bool = True,
    identity: IdentityConfig | None = None,
) -> Iterator[ApiHarness]:
    services = build_services(
        engine=make_engine(database_url, pool_size=5),
        master_key=MasterKey(secrets.token_bytes(32)),
        public_http_url="http://127.0.0.1:8080",
        cache_ttl_seconds=0.0,
        identity=identity,
    )
    app = create_app(services, bootstrap_token=bootstrap_token, max_body_bytes=256 * 1024, identity=identity)
    with TestClient(app, base_url="https://testserver") as client:
        assert client.portal is not None
        seeded = client.portal.call(seed_minimal, services)
        admin_key = ""
        if seed_admin:
            admin = client.portal.call(
                lambda: services.api_keys.create(
                    name="test-admin", roles=["admin"], expires_in=None, actor=SYSTEM
                )
            )
            admin_key = admin.secret
        harness = ApiHarness(
            client=client, services=services, admin_key=admin_key, seeded=seeded, database_url=database_url
        )
        try:
            yield harness
        finally:
            client.portal.call(services.context.engine.dispose)
