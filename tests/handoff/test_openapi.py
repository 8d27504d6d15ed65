"""docs/openapi.yaml describes exactly the agent API the gateway serves."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bot.app import create_app
from bot.core.settings import Settings

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
API_PREFIXES = ("/api/agent/", "/api/supervisor/", "/api/auth/")


def _served(settings: Settings) -> set[tuple[str, str]]:
    app = create_app(settings, nlu_url="http://127.0.0.1:1", public_url="http://127.0.0.1:2")
    routes = set()
    for r in app.router.routes():
        path = r.resource.canonical if r.resource else ""
        if r.method in ("GET", "POST", "PUT", "PATCH", "DELETE") and path.startswith(API_PREFIXES):
            routes.add((r.method.lower(), path))
    return routes


def test_spec_matches_the_routes(settings: Settings) -> None:
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    assert spec["openapi"].startswith("3.")
    documented = {
        (method, path)
        for path, ops in spec["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert documented == _served(settings)


def test_every_post_in_the_spec_names_csrf(settings: Settings) -> None:
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method == "post" and path != "/api/auth/login":
                assert {"session": [], "csrf": []} in op.get("security", []), (method, path)
            for ref in re.findall(r"\{(\w+)\}", path):
                names = [p.get("name") or p.get("$ref", "").rsplit("/", 1)[-1]
                         for p in op.get("parameters", [])]  # fmt: skip
                assert ref in names, (method, path, ref)
