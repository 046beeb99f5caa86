"""YAML documents that remember where each value came from.

Every error capsim reports about an input file names the file, the field path
(`services[0].model.workers`) and the line. ruamel.yaml's round-trip loader
keeps the position of every key and item, so documents are loaded with it and
kept as its tree; `plain()` gives ordinary dicts/lists for validation. The
tree and the source text are also what a minimal-diff writer needs later.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from sim.errors import InputError

PathPart = str | int
FieldPath = tuple[PathPart, ...]

M = TypeVar("M", bound=BaseModel)

_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def format_path(path: Iterable[PathPart]) -> str:
    """`("services", 0, "model")` -> `services[0].model`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def parse_path(text: str) -> FieldPath:
    """`spec.containers[0].image` -> `("spec", "containers", 0, "image")`; the inverse of format_path."""
    parts: list[PathPart] = []
    pos = 0
    for match in _PATH_TOKEN.finditer(text):
        between = text[pos : match.start()]
        if between not in ("", "."):
            raise ValueError(f"malformed field path {text!r}")
        key, index = match.groups()
        parts.append(int(index) if index is not None else key)
        pos = match.end()
    if not parts or pos != len(text) or text.startswith(".") or text.endswith("."):
        raise ValueError(f"malformed field path {text!r}")
    return tuple(parts)


@dataclass(frozen=True)
class SourceLocation:
    """Where a value was written: enough to point a user at it later (the engine's runtime errors)."""

    file: Path
    field: str
    line: int | None

    def error(self, message: str, valid: str | None = None) -> InputError:
        return InputError(message, file=self.file, field=self.field, line=self.line, valid=valid)


def to_plain(node: Any) -> Any:
    """ruamel's commented containers and scalar subclasses -> plain dict/list/int/float/str/bool."""
    if isinstance(node, dict):
        return {str(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


@dataclass(frozen=True)
class YamlDocument:
    """One document of a (possibly multi-document) YAML file, or a subtree of one.

    `base` is the path of `root` inside the file's document, so errors about an
    inline manifest embedded in a scenario read
    `services[0].manifests.scaled_object.spec.triggers[0]`.
    """

    file: Path
    index: int
    root: Any
    base: FieldPath = ()

    def plain(self) -> Any:
        return to_plain(self.root)

    def get(self, path: Sequence[PathPart], default: Any = None) -> Any:
        node = self.root
        for part in path:
            if isinstance(part, int):
                if not isinstance(node, list) or not -len(node) <= part < len(node):
                    return default
            elif not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def sub(self, path: Sequence[PathPart]) -> YamlDocument:
        """A view of the subtree at `path`, reporting positions in the same file."""
        return YamlDocument(self.file, self.index, self.get(path), (*self.base, *path))

    def field(self, path: Sequence[PathPart]) -> str:
        return format_path((*self.base, *path))

    def line_of(self, path: Sequence[PathPart]) -> int | None:
        """1-based line of the deepest node along `path` that exists (the key's line for a mapping entry)."""
        node = self.root
        line: int | None = _own_line(node)
        for part in path:
            if isinstance(node, CommentedMap) and not isinstance(part, int) and part in node:
                line = node.lc.key(part)[0] + 1
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                line = node.lc.item(part)[0] + 1
                node = node[part]
            else:
                break
        return line

    def locate(self, path: Sequence[PathPart]) -> SourceLocation:
        return SourceLocation(self.file, self.field(path), self.line_of(path))

    def error(self, path: Sequence[PathPart], message: str, valid: str | None = None) -> InputError:
        return self.locate(path).error(message, valid)


def _own_line(node: Any) -> int | None:
    if isinstance(node, CommentedMap | CommentedSeq):
        return int(node.lc.line) + 1
    return None


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def load_documents(path: Path, text: str | None = None) -> list[YamlDocument]:
    """Every non-empty document in a YAML file, in order; parse errors become InputError with the line.

    `text`, when given, stands in for the file's content: the manifest writer
    reads back a planned edit before anything is written.
    """
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise InputError("file not found", file=path) from exc
        except IsADirectoryError as exc:
            raise InputError("expected a YAML file, found a directory", file=path) from exc
        except UnicodeDecodeError as exc:
            raise InputError("file is not UTF-8 text", file=path) from exc
    try:
        roots = list(_yaml().load_all(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        detail = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise InputError(
            f"not valid YAML: {detail}", file=path, line=mark.line + 1 if mark else None
        ) from exc
    return [YamlDocument(path, i, root) for i, root in enumerate(roots) if root is not None]


def load_mapping(path: Path, text: str | None = None) -> YamlDocument:
    """A file that must hold exactly one YAML mapping (a scenario, a kustomization)."""
    docs = load_documents(path, text)
    if not docs:
        raise InputError("file is empty", file=path, valid="a YAML mapping")
    if len(docs) > 1:
        raise InputError(
            f"expected one YAML document, found {len(docs)}", file=path, line=docs[1].line_of(())
        )
    if not isinstance(docs[0].root, dict):
        raise InputError(
            f"expected a mapping at the top level, found {type(docs[0].plain()).__name__}",
            file=path,
            line=docs[0].line_of(()),
        )
    return docs[0]


# --- pydantic errors mapped onto the YAML tree -------------------------------------------------


def validate_model(model: type[M], doc: YamlDocument) -> M:
    """Validate `doc` against a pydantic model; the first problem becomes an InputError at its line."""
    try:
        return model.model_validate(doc.plain())
    except ValidationError as exc:
        raise _input_error(model, doc, exc) from None


def _input_error(model: type[BaseModel], doc: YamlDocument, exc: ValidationError) -> InputError:
    # An unknown field usually explains the "missing" error next to it (a typo), so it goes first.
    errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc = tuple(first["loc"])
    path = _data_path(doc.plain(), loc)
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        tag = str(first.get("ctx", {}).get("discriminator", "")).strip("'")
        if tag:
            path = (*path, tag)
    message = _message(first)
    valid: str | None = None
    if first["type"] == "extra_forbidden":
        allowed = _allowed_fields(model, loc[:-1])
        if allowed:
            valid = "one of " + ", ".join(allowed)
        message = "unknown field"
    elif first["type"] == "missing":
        message = "required field is missing"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return doc.error(path, message, valid)


def _message(error: Any) -> str:
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _data_path(data: Any, loc: FieldPath) -> FieldPath:
    """The path of the offending value in the data, without pydantic's union tags and validator names."""
    path: list[PathPart] = []
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        in_mapping = isinstance(node, dict) and isinstance(part, str) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_mapping or in_list:
            node = node[part]
            path.append(part)
        elif last and isinstance(node, dict) and isinstance(part, str):
            path.append(part)  # a missing required key: name it; the line is its parent's
    return tuple(path)


def _allowed_fields(model: type[BaseModel], loc: FieldPath) -> list[str]:
    """Field names accepted at `loc` (pydantic's own loc, with union tags), for "unknown field" errors."""
    current: Any = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    target = _model_of(current)
    if target is None:
        return []
    return [f.alias or name for name, f in target.model_fields.items()]


def _model_of(tp: Any) -> type[BaseModel] | None:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    return None


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional so the underlying type shows."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _step(tp: Any, part: PathPart) -> Any:
    tp = _unwrap(tp)
    model = _model_of(tp)
    if model is not None:
        if not isinstance(part, str):
            return None
        for name, info in model.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
        return None
    origin = get_origin(tp)
    if origin is list or origin is tuple:
        return get_args(tp)[0] if isinstance(part, int) else None
    if origin is dict:
        return get_args(tp)[1]
    if origin in (Union, UnionType):
        # pydantic puts the chosen member in the loc: a discriminated union's tag, else the type's name.
        for member in get_args(tp):
            member_model = _model_of(member)
            if member_model is None:
                continue
            if part == member_model.__name__:
                return member_model
            for info in member_model.model_fields.values():
                if get_origin(info.annotation) is Literal and part in get_args(info.annotation):
                    return member_model
        return None
    return None
