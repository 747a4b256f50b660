"""params.yaml written from the schema (its defaults as values, its descriptions and choices as comments), and
edited in place, its comments kept."""

from __future__ import annotations

import typing
from pathlib import Path

import yaml
from pydantic import BaseModel

from faceattrs.core.params import Params

HEADER = (
    "# Every experiment parameter. Written from the schema in faceattrs/core/params/, the one home of\n"
    "# the defaults and their meaning: `faceattrs params --defaults > params.yaml` rewrites this file.\n"
)
COMMENT_COLUMN = 29


def _choices(annotation) -> list[str]:
    """The names a choice field accepts: a ``Literal``, alone or with ``None``; nothing for mixed unions."""
    if typing.get_origin(annotation) is typing.Literal:
        return [str(v) for v in typing.get_args(annotation)]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return _choices(args[0]) if len(args) == 1 else []


def _scalar(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).split("\n...")[0].strip()


def _line(indent: int, key: str, value: str, comment: str) -> str:
    text = f"{'  ' * indent}{key}:" + (f" {value}" if value else "")
    if comment:
        text = f"{text:<{COMMENT_COLUMN - 2}}  # {comment}"
    return text


def _comment(field) -> str:
    choices = " | ".join(_choices(field.annotation))
    description = field.description or ""
    return f"{choices}: {description}" if choices and description else choices or description


def _render(model: BaseModel, indent: int) -> list[str]:
    lines = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            doc = (type(value).__doc__ or "").strip().splitlines()
            lines.append(_line(indent, name, "", field.description or (doc[0] if doc else "")))
            lines += _render(value, indent + 1)
        elif isinstance(value, dict) and value:
            lines.append(_line(indent, name, "", _comment(field)))
            lines += [_line(indent + 1, str(k), _scalar(v), "") for k, v in value.items()]
        else:
            dumped = model.model_dump(mode="json", include={name})[name]
            lines.append(_line(indent, name, _scalar(dumped), _comment(field)))
    return lines


def render(params: Params | None = None) -> str:
    """params.yaml's text for ``params`` (the schema's defaults when None)."""
    return HEADER + "\n".join(_render(params or Params(), 0)) + "\n"


def set_values(path: Path, values: dict[str, object]) -> Params:
    """Set dotted keys of the params file at ``path`` in place, keeping its comments and order; the file is
    validated before it is written, and left as it was when the result would not be valid."""
    from ruamel.yaml import YAML

    from faceattrs.core.atomic import write_text
    from faceattrs.core.params import parse_params

    editor = YAML()
    editor.preserve_quotes = True
    editor.width = 4096
    doc = editor.load(path.read_text())
    for key, value in values.items():
        node = doc
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    params = parse_params(yaml.safe_load(_dumped(editor, doc)), str(path))
    write_text(path, _dumped(editor, doc))
    return params


def _dumped(editor, doc) -> str:
    import io

    out = io.StringIO()
    editor.dump(doc, out)
    return out.getvalue()
