"""What every record shares: frozen, refusing keys it does not declare, one line per validation failure, versioned
documents read the same way, and JSON Schemas generated the same way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

R = TypeVar("R", bound=BaseModel)


class Record(BaseModel):
    """A frozen record that refuses keys it does not declare."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def one_line(exc: ValidationError) -> str:
    """`field a.b.c: message` for the first failure, and how many more there were."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"field {where}: {first['msg']}{more}"


def json_schema(kind: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of a record (draft 2020-12)."""
    schema = kind.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def parse_document(
    kind: type[R], data: Any, source: str, what: str, supported: tuple[int, ...], error: type[Exception]
) -> R:
    """A versioned document (`format_version`; files without it are format 1) from parsed JSON; `error` names
    `source`, the version or the field, and the problem in one line."""
    if not isinstance(data, dict):
        raise error(f"{source}: not a {what} document (a JSON object is expected)")
    version = data.get("format_version", 1)
    if version not in supported:
        listed = ", ".join(map(str, supported))
        raise error(f"{source}: {what} format {version!r} is not supported (supported: {listed})")
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        raise error(f"{source}: {one_line(exc)}") from None


def read_document(path: str | Path, what: str, error: type[Exception]) -> Any:
    """A JSON file's value; a file that cannot be read or parsed raises `error` naming it."""
    file = Path(path)
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{file}: unreadable {what} file: {exc}") from None
