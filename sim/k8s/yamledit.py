"""Change values in YAML source text without re-rendering anything else.

A tuning PR must show a reviewer only the tuned values: a round trip through
a YAML library re-renders quoting, indentation, flow collections and line
endings. So edits are made on the text itself. ruamel.yaml's composer gives
the exact character span of every node (start and end offsets in the
original text, CRLF included); a value is replaced inside its span, in its
original style (plain, single- or double-quoted, literal or folded block),
and missing keys are inserted after the last line of their mapping with the
mapping's own indentation. Each operation yields a `Splice`; the writer
applies all splices of a file at once.

What cannot be edited safely is refused with a reason: a value that is a
`${VAR}` placeholder, anchored/aliased/tagged values (an edit would change
other places too), files with Helm `{{ }}` templating.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sim.errors import InputError
from sim.k8s.yamlsource import FieldPath, format_path


@dataclass(frozen=True)
class Splice:
    """Replace text[start:end] with `text`; insertions at one offset go in ascending `order`."""

    start: int
    end: int
    text: str
    order: int = 0


def apply_splices(text: str, splices: list[Splice]) -> str:
    ordered = sorted(splices, key=lambda s: (s.start, s.end, s.order))
    out: list[str] = []
    pos = 0
    for s in ordered:
        if s.start < pos:
            raise ValueError("overlapping edits")
        out.append(text[pos : s.start])
        out.append(s.text)
        pos = s.end
    out.append(text[pos:])
    return "".join(out)


@dataclass(frozen=True)
class _Loc:
    node: Node
    key: ScalarNode | None  # the mapping key the node is the value of
    flow: bool  # inside a flow collection


_PLAIN_FIRST_FORBIDDEN = set("-?:,[]{}#&*!|>'\"%@`")
_FLOW_FORBIDDEN = set(",[]{}")


def _parses_as(token: str, value: Any) -> bool:
    try:
        loaded = YAML(typ="safe", pure=True).load(f"k: {token}\n")
    except MarkedYAMLError:
        return False
    got = loaded.get("k") if isinstance(loaded, dict) else None
    return type(got) is type(value) and got == value


def _plain_ok(text: str, flow: bool) -> bool:
    if not text or text != text.strip() or "\n" in text or "\t" in text or "\r" in text:
        return False
    if text[0] in _PLAIN_FIRST_FORBIDDEN or ": " in text or " #" in text or text.endswith(":"):
        return False
    if flow and any(c in _FLOW_FORBIDDEN for c in text):
        return False
    return _parses_as(text, text)


def _float_text(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    if "e" in text and "." not in text.split("e")[0]:
        mantissa, exp = text.split("e")
        text = f"{mantissa}.0e{exp}"
    return text


def scalar_text(value: Any, style: str | None = None, flow: bool = False) -> str:
    """`value` as one YAML token, in `style` ('"', "'", or None for plain) where that style can hold it."""
    if isinstance(value, str):
        if style == "'" and value.isprintable():
            return "'" + value.replace("'", "''") + "'"
        if style is None and _plain_ok(value, flow):
            return value
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_text(value)
    raise TypeError(f"cannot write a {type(value).__name__} as a YAML scalar")


Hints = dict[str, str]  # key -> quote style of the string values it held; "-" for list items


def flow_text(value: Any, json_style: bool = False, hints: Hints | None = None) -> str:
    """A value in flow style (`{a: 1, b: [x]}`); `json_style` quotes every key and string (a .json file).

    `hints` keep the quoting the replaced values had (`values: ["m"]` stays double-quoted).
    """
    hints = hints or {}
    forced = '"' if json_style else None
    if isinstance(value, dict):
        items = [
            f"{scalar_text(str(k), forced, True)}: {_flow_child(v, json_style, hints, str(k))}"
            for k, v in value.items()
        ]
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow_child(v, json_style, hints, "-") for v in value) + "]"
    return scalar_text(value, forced, True)


def _flow_child(value: Any, json_style: bool, hints: Hints, key: str) -> str:
    if isinstance(value, str) and not json_style:
        return scalar_text(value, hints.get(key), True)
    return flow_text(value, json_style, hints)


@dataclass(frozen=True)
class BlockStyle:
    """How a file indents: mapping step and where `-` of a list under a key sits (0: at the key's column)."""

    step: int = 2
    seq_offset: int = 2


def block_lines(
    value: dict[str, Any] | list[Any], indent: int, style: BlockStyle, hints: Hints | None = None
) -> list[str]:
    """A mapping or list in block style, one string per line, indented by `indent` spaces."""
    hints = hints or {}
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, child in value.items():
            k = scalar_text(str(key))
            if isinstance(child, dict) and child:
                lines.append(f"{pad}{k}:")
                lines.extend(block_lines(child, indent + style.step, style, hints))
            elif isinstance(child, list) and child:
                lines.append(f"{pad}{k}:")
                lines.extend(block_lines(child, indent + style.seq_offset, style, hints))
            elif isinstance(child, dict | list):
                lines.append(f"{pad}{k}: {flow_text(child, hints=hints)}")
            else:
                lines.append(f"{pad}{k}: {scalar_text(child, hints.get(str(key)))}")
        return lines
    for item in value:
        if isinstance(item, dict) and item:
            inner = block_lines(item, indent + 2, style, hints)
            lines.append(f"{pad}- {inner[0][indent + 2 :]}")
            lines.extend(inner[1:])
        elif isinstance(item, dict | list):
            lines.append(f"{pad}- {flow_text(item, hints=hints)}")
        else:
            lines.append(f"{pad}- {scalar_text(item, hints.get('-'))}")
    return lines


def style_hints(node: Node) -> Hints:
    """The quote style each key's string values (and list items) had under `node`, first seen wins."""
    hints: Hints = {}
    stack: list[tuple[str, Node]] = [("-", node)]
    while stack:
        key, current = stack.pop(0)
        if isinstance(current, ScalarNode):
            if current.style in ('"', "'") and key not in hints:
                hints[key] = current.style
        elif isinstance(current, MappingNode):
            stack.extend((str(k.value), v) for k, v in current.value)
        elif isinstance(current, SequenceNode):
            stack.extend(("-", v) for v in current.value)
    return hints


def refuse_templated(file: Path, text: str) -> None:
    """Refuse Helm-style `{{ }}` outside comments: what gets deployed is the rendered text, not this."""
    for number, line in enumerate(text.splitlines(), start=1):
        code = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
        if "{{" in code:
            raise InputError(
                "cannot edit safely: the file holds Helm-style {{ }} templating; edit its source instead",
                file=file,
                line=number,
            )


class YamlText:
    """One YAML file's (or inline string's) exact text and the composed node graph of each document."""

    def __init__(self, file: Path, text: str, label: str | None = None) -> None:
        self.file = file
        self.text = text
        self.label = label  # where an inline patch lives inside `file`, for messages
        self.newline = "\r\n" if "\r\n" in text else "\n"
        try:
            self.docs: list[Node] = list(YAML(typ="rt").compose_all(text))
        except MarkedYAMLError as exc:
            raise InputError(f"not valid YAML: {exc.problem}", file=file) from None
        self._ids: dict[int, int] = {}
        for doc in self.docs:
            self._count(doc)
        self.style = self._detect_style()

    # --- locating -----------------------------------------------------------------------------------

    def _count(self, node: Node) -> None:
        self._ids[id(node)] = self._ids.get(id(node), 0) + 1
        if self._ids[id(node)] > 1:
            return
        if isinstance(node, MappingNode):
            for k, v in node.value:
                self._count(k)
                self._count(v)
        elif isinstance(node, SequenceNode):
            for v in node.value:
                self._count(v)

    def refuse(self, path: FieldPath, message: str, line: int | None = None) -> InputError:
        where = f"{self.label}: " if self.label else ""
        return InputError(
            f"{where}cannot edit safely: {message}", file=self.file, field=format_path(path), line=line
        )

    def find(self, index: int, path: FieldPath) -> _Loc:
        if not 0 <= index < len(self.docs):
            raise self.refuse(path, f"document {index} not found")
        node: Node = self.docs[index]
        key: ScalarNode | None = None
        flow = False
        for depth, part in enumerate(path):
            flow = flow or bool(getattr(node, "flow_style", False))
            if isinstance(node, MappingNode) and isinstance(part, str):
                matches = [(k, v) for k, v in node.value if isinstance(k, ScalarNode) and k.value == part]
                if len(matches) != 1:
                    problem = "a duplicate key" if matches else "no such key"
                    raise self.refuse(path[: depth + 1], problem, node.start_mark.line + 1)
                key, node = matches[0]
            elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                key, node = None, node.value[part]
            else:
                raise self.refuse(path[: depth + 1], "path not found", node.start_mark.line + 1)
        return _Loc(node, key, flow)

    def line_of(self, index: int, path: FieldPath) -> int:
        loc = self.find(index, path)
        node = loc.key if loc.key is not None else loc.node
        return int(node.start_mark.line) + 1

    def _detect_style(self) -> BlockStyle:
        step: int | None = None
        seq: int | None = None
        stack = list(self.docs)
        while stack and (step is None or seq is None):
            node = stack.pop(0)
            if isinstance(node, MappingNode) and not node.flow_style:
                for k, v in node.value:
                    nested = isinstance(v, MappingNode) and not v.flow_style and v.value
                    if nested and step is None and v.start_mark.line > k.start_mark.line:
                        step = v.value[0][0].start_mark.column - k.start_mark.column
                    if isinstance(v, SequenceNode) and not v.flow_style and v.value and seq is None:
                        seq = v.start_mark.column - k.start_mark.column
                    stack.append(v)
            elif isinstance(node, SequenceNode):
                stack.extend(node.value)
        step = step if step and step > 0 else 2
        return BlockStyle(step, seq if seq is not None and seq >= 0 else step)

    def _check_editable(self, path: FieldPath, node: Node) -> None:
        span = self.text[node.start_mark.index : node.end_mark.index]
        line = node.start_mark.line + 1
        if "${" in span:
            raise self.refuse(
                path, "the value is a ${VAR}-style placeholder, filled in by another tool", line
            )
        if self._ids.get(id(node), 0) > 1 or span.startswith(("&", "*")):
            raise self.refuse(path, "the value is a YAML anchor or alias shared with other fields", line)
        if span.startswith("!"):
            raise self.refuse(path, "the value carries an explicit YAML tag", line)

    def check_file(self) -> None:
        refuse_templated(self.file, self.text)

    # --- edits --------------------------------------------------------------------------------------

    def set_value(self, index: int, path: FieldPath, value: Any) -> Splice:
        """Replace the value at `path` (it must exist), keeping its style where the style can hold it."""
        loc = self.find(index, path)
        node = loc.node
        if isinstance(node, ScalarNode) and node.start_mark.index == node.end_mark.index:
            return self._fill_empty(path, loc, value)
        self._check_editable(path, node)
        if isinstance(value, dict | list):
            return self._replace_with_collection(path, loc, value)
        if not isinstance(node, ScalarNode):
            start, end = node.start_mark.index, self._content_end(node)
            if loc.key is not None and not (loc.flow or getattr(node, "flow_style", False)):
                start = self._key_colon(loc.key)
                return Splice(start, end, " " + scalar_text(value))
            return Splice(start, end, scalar_text(value, None, loc.flow))
        if node.style in ("|", ">") and isinstance(value, str):
            block = self._block(node, value)
            if block is not None:
                return block
        style = node.style if node.style in ('"', "'") else None
        start, end = node.start_mark.index, node.end_mark.index
        if node.style in ("|", ">"):
            end = start + len(self.text[start:end].rstrip(" \t\r\n"))
        return Splice(start, end, scalar_text(value, style, loc.flow))

    def _content_end(self, node: Node) -> int:
        """Where the node's text ends, without the comments and blank lines a collection's span includes."""
        while isinstance(node, MappingNode | SequenceNode) and not node.flow_style and node.value:
            last = node.value[-1]
            node = last[1] if isinstance(last, tuple) else last
        start, end = node.start_mark.index, node.end_mark.index
        if isinstance(node, ScalarNode) and node.style in ("|", ">"):
            return start + len(self.text[start:end].rstrip(" \t\r\n"))
        return end

    def _line_end(self, pos: int) -> int:
        m = re.compile(r"\r?\n").search(self.text, pos)
        return m.start() if m else len(self.text)

    def _block(self, node: ScalarNode, value: str) -> Splice | None:
        """A block scalar rewritten in its own style; None when the value needs another style."""
        start, end = node.start_mark.index, node.end_mark.index
        header = re.match(r"([|>])([1-9]?)([+-]?)([1-9]?)", self.text[start:end])
        assert header is not None
        body = value[:-1] if value.endswith("\n") else value
        chomp = "" if value.endswith("\n") else "-"
        first = body.split("\n", 1)[0]
        if not body or body.endswith("\n") or first.startswith((" ", "\t")) or "\r" in body:
            return None
        indicator = header[1]
        if indicator == ">" and "\n" in body:
            indicator = (
                "|"  # folding would need the line breaks doubled; a literal block keeps them as written
            )
        digit = header[2] or header[4]
        content = self.text[start:end].split("\n")[1:]
        indents = [len(line) - len(line.lstrip(" ")) for line in content if line.strip()]
        if not indents:
            return None
        pad = " " * min(indents)
        header_end = self._line_end(start)
        rest_of_header = self.text[start + header.end() : header_end]
        lines = [pad + line if line else "" for line in body.split("\n")]
        text = indicator + digit + chomp + rest_of_header + self.newline + self.newline.join(lines)
        stop = start + len(self.text[start:end].rstrip(" \t\r\n"))
        return Splice(start, stop, text)

    def _key_colon(self, key: ScalarNode) -> int:
        colon = self.text.index(":", key.end_mark.index)
        return colon + 1

    def _fill_empty(self, path: FieldPath, loc: _Loc, value: Any) -> Splice:
        """`key:` with nothing after it gets a value (a scalar on the line, a collection below it)."""
        if loc.key is None:
            raise self.refuse(path, "an empty list item cannot be filled in")
        if isinstance(value, dict | list) and value and not loc.flow:
            indent = loc.key.start_mark.column + (
                self.style.step if isinstance(value, dict) else self.style.seq_offset
            )
            at = self._line_end(self._key_colon(loc.key))
            lines = block_lines(value, indent, self.style)
            return Splice(at, at, self.newline + self.newline.join(lines))
        at = self._key_colon(loc.key)
        text = flow_text(value) if isinstance(value, dict | list) else scalar_text(value, None, loc.flow)
        return Splice(at, at, " " + text)

    def _replace_with_collection(
        self, path: FieldPath, loc: _Loc, value: dict[str, Any] | list[Any]
    ) -> Splice:
        node = loc.node
        end = self._content_end(node)
        hints = style_hints(node)
        if loc.flow or getattr(node, "flow_style", False) or not value:
            return Splice(node.start_mark.index, end, flow_text(value, hints=hints))
        if loc.key is None:
            raise self.refuse(path, "a list item can only be replaced field by field")
        step = self.style.step if isinstance(value, dict) else self.style.seq_offset
        if isinstance(node, MappingNode | SequenceNode) and node.value:
            indent = node.start_mark.column
        else:
            indent = loc.key.start_mark.column + step
        lines = block_lines(value, indent, self.style, hints)
        return Splice(self._key_colon(loc.key), end, self.newline + self.newline.join(lines))

    def insert(self, index: int, path: FieldPath, additions: dict[str, Any]) -> Splice:
        """Add keys (with nested mappings) to the mapping at `path`, after its last entry, in its style."""
        loc = self.find(index, path)
        node = loc.node
        if not isinstance(node, MappingNode):
            raise self.refuse(path, "expected a mapping to add fields to")
        order = -len(path)  # deeper mappings end first when several end on the same line
        if loc.flow or node.flow_style:
            json_style = bool(node.value) and all(k.style == '"' for k, _ in node.value)
            items = flow_text(additions, json_style)[1:-1]
            if node.value:
                return Splice(
                    self._content_end(node.value[-1][1]),
                    self._content_end(node.value[-1][1]),
                    ", " + items,
                    order,
                )
            at = node.start_mark.index + 1
            return Splice(at, at, items, order)
        if not node.value:
            raise self.refuse(path, "empty block mapping")
        indent = node.value[0][0].start_mark.column
        at = self._line_end(self._content_end(node))
        lines = block_lines(additions, indent, self.style)
        return Splice(at, at, self.newline + self.newline.join(lines), order)

    def append(self, index: int, path: FieldPath, item: Any) -> Splice:
        """Add an item at the end of the list at `path`."""
        loc = self.find(index, path)
        node = loc.node
        if not isinstance(node, SequenceNode):
            raise self.refuse(path, "expected a list")
        if loc.flow or node.flow_style:
            if node.value:
                at = self._content_end(node.value[-1])
                return Splice(at, at, ", " + flow_text(item))
            return Splice(node.start_mark.index + 1, node.start_mark.index + 1, flow_text(item))
        if not node.value:
            raise self.refuse(path, "empty block list")
        indent = node.start_mark.column
        at = self._line_end(self._content_end(node))
        lines = block_lines([item], indent, self.style)
        return Splice(at, at, self.newline + self.newline.join(lines))


class InlineText:
    """A YAML document written as a literal block string inside another file (an inline kustomize patch).

    Edits are made on the string's own text and mapped back to the file:
    each content line of the block is the string's line behind the block's
    indentation, so offsets translate line by line.
    """

    def __init__(self, outer: YamlText, index: int, path: FieldPath) -> None:
        self.outer = outer
        loc = outer.find(index, path)
        node = loc.node
        if not isinstance(node, ScalarNode) or node.style != "|":
            raise outer.refuse(path, "an inline patch can be edited only when written as a literal block (|)")
        start, end = node.start_mark.index, node.end_mark.index
        first = outer.text.index("\n", start) + 1
        raw = outer.text[first:end]
        lines = raw.split("\n")
        indents = [len(line) - len(line.lstrip(" ")) for line in lines if line.strip()]
        self.indent = min(indents) if indents else 0
        self.starts: list[int] = []
        inner_lines = []
        pos = first
        for line in lines:
            body = line.rstrip("\r")
            self.starts.append(pos + min(self.indent, len(body)))
            inner_lines.append(body[self.indent :])
            pos += len(line) + 1
        self.inner_line_starts: list[int] = []
        offset = 0
        for line in inner_lines:
            self.inner_line_starts.append(offset)
            offset += len(line) + 1
        self.text = YamlText(outer.file, "\n".join(inner_lines), label=format_path(path))

    def to_outer(self, splice: Splice) -> Splice:
        def offset(inner: int) -> int:
            line = max(i for i, s in enumerate(self.inner_line_starts) if s <= inner)
            return self.starts[line] + inner - self.inner_line_starts[line]

        text = splice.text.replace("\n", self.outer.newline + " " * self.indent)
        return Splice(offset(splice.start), offset(splice.end), text, splice.order)
