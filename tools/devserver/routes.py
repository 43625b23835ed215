"""Routes read from ``template.yaml``: the single source of which function serves what."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML loader that keeps CloudFormation short-form tags (!Ref, !Sub...) as plain data."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node)}
    return {suffix: loader.construct_mapping(node)}


_CfnLoader.add_multi_constructor("!", _tag)


@dataclass(frozen=True)
class Route:
    function: str  # logical id, e.g. CatalogFunction
    code_uri: str  # e.g. functions/catalog/
    handler: str  # e.g. app.lambda_handler
    method: str  # GET, POST, ... or ANY
    path: str  # /v1/items/{id}, or $default
    pattern: re.Pattern[str]

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"

    @property
    def module(self) -> str:
        """Import path of the handler module, e.g. ``functions.catalog.app``."""
        package = self.code_uri.strip("/").replace("/", ".")
        return f"{package}.{self.handler.rsplit('.', 1)[0]}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.method not in ("ANY", method.upper()):
            return None
        found = self.pattern.match(path)
        return found.groupdict() if found else None


def _compile(path: str) -> re.Pattern[str]:
    if path == "$default":
        return re.compile(r"^.*$")
    regex = re.sub(r"\\\{([A-Za-z0-9_]+)\\\}", r"(?P<\1>[^/]+)", re.escape(path))
    return re.compile(f"^{regex}$")


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - safe subclass
    return loaded


def http_routes(template: dict[str, Any] | None = None) -> list[Route]:
    """Every HttpApi route of the template, specific paths before ``$default``."""
    template = template or load_template()
    globals_handler = template.get("Globals", {}).get("Function", {}).get("Handler")
    routes: list[Route] = []
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties", {})
        handler = props.get("Handler", globals_handler)
        for event in (props.get("Events") or {}).values():
            if event.get("Type") != "HttpApi":
                continue
            event_props = event.get("Properties") or {}
            method = str(event_props.get("Method", "ANY")).upper()
            path = event_props.get("Path", "$default")
            routes.append(
                Route(logical_id, props["CodeUri"], handler, method, path, _compile(path))
            )
    # Static segments win over parameters, and $default comes last, as in API Gateway.
    routes.sort(key=lambda r: (r.path == "$default", r.path.count("{"), -len(r.path)))
    return routes


def function_names(template: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    template = template or load_template()
    return {
        name: resource
        for name, resource in template.get("Resources", {}).items()
        if resource.get("Type") == "AWS::Serverless::Function"
    }
