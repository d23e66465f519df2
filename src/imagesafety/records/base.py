"""What every record shares: frozen, refusing keys it does not declare, and one line per validation failure."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class Record(BaseModel):
    """A frozen record that refuses keys it does not declare."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def one_line(exc: ValidationError) -> str:
    """`field a.b.c: message` for the first failure, and how many more there were."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"field {where}: {first['msg']}{more}"
