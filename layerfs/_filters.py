"""containerd's filter syntax for ``Store.walk``.

A filter is selectors joined by commas (AND); ``walk`` ORs several filters.
A selector is a field path, optionally an operator and a value::

    kind==active          name==web          parent!=base
    labels.env            labels.env==prod   labels."a.b"==v    name~=^web-

Field paths: ``name``, ``parent``, ``kind``, ``labels.<key>``; a segment may
be double-quoted to hold dots. Operators: ``==``, ``!=``, ``~=`` (regular
expression search). Values may be bare (up to the next comma) or quoted.
A selector without an operator is true when the field is present and
non-empty.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from . import errors
from ._types import Info

Predicate = Callable[[Info], bool]

_IDENT = re.compile(r"[A-Za-z0-9_\-/]+")
_OPERATORS = ("==", "!=", "~=")


@dataclasses.dataclass(frozen=True)
class Selector:
    """One parsed selector: ``path op value``."""

    path: tuple[str, ...]
    op: str | None
    value: str | None

    def matches(self, info: Info) -> bool:
        """Apply the selector to one snapshot."""
        present, actual = _field(info, self.path)
        if self.op is None:
            return present and actual != ""
        assert self.value is not None
        if self.op == "==":
            return present and actual == self.value
        if self.op == "!=":
            return not present or actual != self.value
        return present and re.search(self.value, actual) is not None


def _field(info: Info, path: tuple[str, ...]) -> tuple[bool, str]:
    head, rest = path[0], path[1:]
    if head == "labels":
        if len(rest) != 1:
            return False, ""
        value = info.labels.get(rest[0])
        return value is not None, value or ""
    if rest:
        return False, ""
    if head == "name":
        return True, info.name
    if head == "parent":
        return info.parent is not None, info.parent or ""
    if head == "kind":
        return True, info.kind.value
    return False, ""


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, why: str) -> errors.InvalidArgument:
        return errors.InvalidArgument(
            f"filter {self.text!r}: {why} at column {self.pos + 1}; "
            'expected e.g. kind==active,labels."a.b"==v'
        )

    def peek(self, s: str) -> bool:
        return self.text.startswith(s, self.pos)

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def quoted(self) -> str:
        quote = self.text[self.pos]
        self.pos += 1
        out = []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if c == quote:
                self.pos += 1
                return "".join(out)
            out.append(c)
            self.pos += 1
        raise self.fail("unterminated quote")

    def segment(self) -> str:
        if self.pos < len(self.text) and self.text[self.pos] in "\"'":
            return self.quoted()
        m = _IDENT.match(self.text, self.pos)
        if not m:
            raise self.fail("expected a field name")
        self.pos = m.end()
        return m.group()

    def value(self) -> str:
        self.skip_space()
        if self.pos < len(self.text) and self.text[self.pos] in "\"'":
            return self.quoted()
        end = self.text.find(",", self.pos)
        end = len(self.text) if end < 0 else end
        raw = self.text[self.pos : end].strip()
        self.pos = end
        if not raw:
            raise self.fail("expected a value")
        return raw

    def selector(self) -> Selector:
        self.skip_space()
        path = [self.segment()]
        while self.peek("."):
            self.pos += 1
            path.append(self.segment())
        if path[0] not in ("name", "parent", "kind", "labels"):
            raise self.fail(f"unknown field {path[0]!r} (name, parent, kind, labels.<key>)")
        self.skip_space()
        for op in _OPERATORS:
            if self.peek(op):
                self.pos += len(op)
                value = self.value()
                if op == "~=":
                    try:
                        re.compile(value)
                    except re.error as exc:
                        raise self.fail(f"bad regular expression ({exc})") from exc
                return Selector(tuple(path), op, value)
        return Selector(tuple(path), None, None)

    def parse(self) -> list[Selector]:
        selectors = [self.selector()]
        self.skip_space()
        while self.peek(","):
            self.pos += 1
            selectors.append(self.selector())
            self.skip_space()
        if self.pos != len(self.text):
            raise self.fail("unexpected text")
        return selectors


def parse(text: str) -> list[Selector]:
    """Parse one filter into its AND-ed selectors.

    Raises:
        errors.InvalidArgument: the filter is malformed; the message points at the column.
    """
    if not isinstance(text, str) or not text.strip():
        raise errors.InvalidArgument(f"filter {text!r} is empty")
    return _Parser(text).parse()


def compile_filters(filters: tuple[str, ...]) -> Predicate:
    """Compile ``walk`` filters (OR of ANDs) into one predicate; no filter matches all."""
    parsed = [parse(f) for f in filters]
    if not parsed:
        return lambda info: True
    return lambda info: any(all(s.matches(info) for s in sel) for sel in parsed)
