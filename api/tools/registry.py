"""Tool definitions. The same msgspec types validate arguments, encode results and generate the
inputSchema/outputSchema that tools/list shows, so the schema can never drift from the code."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.commands.rotations import SagaQueue
from lockzero.engine.domain import events as ev
from lockzero.engine.domain.aggregates.api_key import ApiKey
from lockzero.engine.domain.errors import InvalidInput

#: True while the endpoint answers a JSON-RPC batch: its messages run one after another, so a call that could
#: wait (verify_remediation's long poll) answers at once instead of holding up the rest.
IN_BATCH: ContextVar[bool] = ContextVar("lockzero_in_batch", default=False)


@dataclass
class CallContext:
    engine: Engine
    key: ApiKey
    actor: ev.EventMeta
    queue: SagaQueue | None = None
    #: The secret the call concerns, for the audit record (set by handlers that know one).
    secret_id: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Annotations:
    read_only: bool
    destructive: bool
    idempotent: bool
    open_world: bool

    def as_mcp(self) -> dict[str, bool]:
        return {
            "readOnlyHint": self.read_only,
            "destructiveHint": self.destructive,
            "idempotentHint": self.idempotent,
            "openWorldHint": self.open_world,
        }


Handler = Callable[[CallContext, Any], Awaitable[msgspec.Struct]]


@dataclass(frozen=True)
class Tool:
    name: str
    title: str
    description: str
    arguments: type[msgspec.Struct]
    result: type[msgspec.Struct]
    annotations: Annotations
    handler: Handler
    #: Write tools need a read-write key and are hidden from read-only keys.
    writes: bool = False
    _schemas: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def input_schema(self) -> dict[str, Any]:
        # Built once: generating a schema costs milliseconds, and error messages consult it too.
        schema: dict[str, Any] | None = self._schemas.get("input")
        if schema is None:
            schema = self._schemas["input"] = json_schema(self.arguments)
        return schema

    def output_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] | None = self._schemas.get("output")
        if schema is None:
            schema = self._schemas["output"] = json_schema(self.result)
        return schema

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": self.input_schema(),
            "outputSchema": self.output_schema(),
            "annotations": {"title": self.title, **self.annotations.as_mcp()},
        }

    def parse_arguments(self, raw: Any) -> msgspec.Struct:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise InvalidInput("arguments must be a JSON object")
        if _has_nul(raw):
            raise InvalidInput("arguments must not contain NUL characters")
        try:
            parsed: msgspec.Struct = msgspec.convert(raw, self.arguments)
            return parsed
        except msgspec.ValidationError as exc:
            raise InvalidInput(f"invalid arguments for {self.name}: {self._explain(str(exc))}") from None

    def _explain(self, error: str) -> str:
        """msgspec's message without the caller's value: some of its messages quote it (an enum value,
        an unknown field's name), and an argument may well be a pasted credential."""
        message, _, path = error.partition(" - at `")
        fields = self.input_schema().get("properties", {})
        if message.startswith("Object contains unknown field"):
            return f"unknown argument; {self.name} takes only: {', '.join(fields)}"
        match = re.match(r"\$\.([A-Za-z_][A-Za-z0-9_]*)", path)
        field = match.group(1) if match and match.group(1) in fields else None
        if message.startswith(("Expected `", "Object missing required field `")):
            # These name only types, bounds and schema patterns, never what was sent.
            return f"{message} (at {field})" if field else message
        return f"{field or 'an argument'} must be {_expectation(fields.get(field, {}))}"


def _expectation(prop: dict[str, Any]) -> str:
    options = prop.get("anyOf", [prop])
    enums = [v for o in options for v in o.get("enum", ())]
    if enums:
        return "one of: " + ", ".join(str(v) for v in enums)
    types = [str(o.get("type")) for o in options if "type" in o]
    return "of type " + " or ".join(types) if types else "as the inputSchema describes"


def _has_nul(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if depth > 64:
        return False
    if isinstance(value, dict):
        return any(_has_nul(k, depth + 1) or _has_nul(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v, depth + 1) for v in value)
    return False


def json_schema(struct: type[msgspec.Struct]) -> dict[str, Any]:
    """A self-contained JSON Schema object for ``struct`` (nested types under $defs)."""
    (ref,), components = msgspec.json.schema_components([struct], ref_template="#/$defs/{name}")
    name = ref["$ref"].rsplit("/", 1)[-1]
    schema = dict(components.pop(name))
    if components:
        schema["$defs"] = components
    return schema


class Registry:
    def __init__(self, tools: list[Tool]) -> None:
        self._tools = {t.name: t for t in tools}
        self._described: dict[bool, msgspec.Raw] = {}

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def visible_to(self, key: ApiKey) -> list[Tool]:
        return [t for t in self._tools.values() if not (t.writes and key.read_only)]

    def described_for(self, key: ApiKey) -> msgspec.Raw:
        """The tools/list array for this key's permission, encoded once per permission: the tools
        never change while the process runs, and rebuilding schemas per call cost milliseconds."""
        described = self._described.get(key.read_only)
        if described is None:
            tools = [t.describe() for t in self.visible_to(key)]
            described = self._described[key.read_only] = msgspec.Raw(msgspec.json.encode(tools))
        return described

    def __contains__(self, name: object) -> bool:
        return name in self._tools
