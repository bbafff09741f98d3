"""YAML read as YAML 1.2 (what OpenAPI specifies, and what people mean in a config file).

PyYAML implements YAML 1.1, where `2020-01-01` is a date, `yes`/`no`/`on`/`off` are
booleans, `1:30` is the integer 90 and `017` is octal. Specs mean those as strings
(enum members, examples, defaults), and so does a config's `discovery: off`; so only
YAML 1.2 core-schema booleans, integers and floats are resolved, and mapping keys are
always strings (`200:` -> "200"), as JSON Schema property names and OpenAPI map keys must be.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml


def load(text: str) -> Any:
    """Parse YAML 1.2 text (safe: plain data only). Raises yaml.YAMLError."""
    return yaml.load(text, Loader=_YamlLoader)


def describe_error(exc: yaml.YAMLError) -> str:
    """`invalid YAML at line L, column C: problem`."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"invalid YAML{where}: {exc.problem or exc.context}"
    return f"invalid YAML: {exc}"


class _YamlLoader(yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader):  # type: ignore[misc]
    """Safe YAML with YAML 1.2 core-schema scalars and string keys (the module's docstring says why)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[str, Any]:
        # Keys are made strings one by one, before they meet in a dict: `1` and `true`
        # would otherwise be the same Python key.
        self.flatten_mapping(node)  # `<<` merge keys
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _key_text(self.construct_object(key_node, deep=True))
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


def _key_text(key: Any) -> str:
    """A non-string YAML key as the text JSON would give it (`true`, `null`, `200`)."""
    if isinstance(key, str):
        return key
    return json.dumps(key) if key is None or isinstance(key, bool) else str(key)


# The YAML 1.1 resolvers replaced by YAML 1.2 core-schema ones (timestamps: none at all).
_YAML11_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("bool", "int", "float", "timestamp")}
_YamlLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag not in _YAML11_TAGS]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
# Decimal (no leading zeros, so PyYAML's constructor never reads octal) or 0x hex.
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?[0-9]+[eE][-+]?[0-9]+"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
