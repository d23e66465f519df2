"""Reading the JavaScript object literal a bundled tfjs model is written as
(`{modelTopology:{...},weightsManifest:[...]}`,
or a base64 string for a weight shard): unquoted keys, `!0`/`!1` for booleans, `.5` numbers. Nothing is evaluated."""

from __future__ import annotations

import json
import re
from typing import Any

_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_$][\w$]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_WORDS = (("null", None), ("true", True), ("false", False), ("void 0", None), ("!0", True), ("!1", False))
#: a browserify bundle's first module: `{1:[function(require,module,exports){module.exports=VALUE},{}]}`
_BUNDLE_START = re.compile(r"\{1:\[function\((\w+),(\w+),(\w+)\)\{\2\.exports=")
_BUNDLE_END = "},{}]},{},[1])(1)"


class LiteralError(ValueError):
    """Text that is not the literal expected; says where."""


class _Reader:
    def __init__(self, text: str, at: int):
        self.text, self.at = text, at

    def fail(self, what: str) -> LiteralError:
        return LiteralError(f"{what} at character {self.at}: {self.text[self.at : self.at + 40]!r}")

    def expect(self, char: str) -> None:
        if self.text[self.at : self.at + 1] != char:
            raise self.fail(f"expected {char!r}")
        self.at += 1

    def value(self) -> Any:
        char = self.text[self.at : self.at + 1]
        if char == "{":
            return self.object()
        if char == "[":
            return self.array()
        if char == '"':
            found = _STRING.match(self.text, self.at)
            if not found:
                raise self.fail("unterminated string")
            self.at = found.end()
            return json.loads(found.group())
        for word, value in _WORDS:
            if self.text.startswith(word, self.at):
                self.at += len(word)
                return value
        found = _NUMBER.match(self.text, self.at)
        if found:
            self.at = found.end()
            text = found.group()
            return float(text) if any(c in text for c in ".eE") else int(text)
        raise self.fail("unexpected value")

    def object(self) -> dict:
        self.expect("{")
        out: dict = {}
        if self.text.startswith("}", self.at):
            self.at += 1
            return out
        while True:
            if self.text.startswith('"', self.at):
                key = self.value()
            else:
                found = _NAME.match(self.text, self.at) or _NUMBER.match(self.text, self.at)
                if not found:
                    raise self.fail("expected a key")
                key, self.at = found.group(), found.end()
            self.expect(":")
            out[key] = self.value()
            if self.text.startswith("}", self.at):
                self.at += 1
                return out
            self.expect(",")

    def array(self) -> list:
        self.expect("[")
        out: list = []
        if self.text.startswith("]", self.at):
            self.at += 1
            return out
        while True:
            out.append(self.value())
            if self.text.startswith("]", self.at):
                self.at += 1
                return out
            self.expect(",")


def parse_literal(text: str, at: int = 0) -> tuple[Any, int]:
    """The literal starting at `at` and where it ends."""
    reader = _Reader(text, at)
    return reader.value(), reader.at


def bundle_value(text: str, where: str = "bundle") -> Any:
    """What a one-module browserify bundle exports (NSFWJS's model.min.js and group*-shard*.min.js)."""
    start = _BUNDLE_START.search(text)
    if not start:
        raise LiteralError(f"{where}: not a browserify bundle of a model (no `module.exports=` in its first module)")
    try:
        value, end = parse_literal(text, start.end())
    except LiteralError as exc:
        raise LiteralError(f"{where}: {exc}") from None
    if not text.startswith(_BUNDLE_END, end):
        raise LiteralError(f"{where}: the exported value does not end the bundle's module (truncated or altered?)")
    return value
