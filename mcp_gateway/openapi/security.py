"""Security at ingest: the spec's `securitySchemes` and each operation's `security` requirements.

The gateway binds configured credentials to these by scheme name (auth/outbound.py) and
applies them at send time (upstream/credentials.py); here they are only read, once per spec,
and operations whose requirements no configured credential meets are reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mcp_gateway.config import ApiConfig
from mcp_gateway.definitions import Issue, Requirement, SecurityScheme, SpecError, ToolDefinition
from mcp_gateway.openapi.load import pointer_join

Deref = Callable[[Any, str], Any]
"""(node, JSON pointer where it is) -> the node with `$ref`s followed."""


class SpecSecurity:
    """The security schemes and default requirements of one spec."""

    def __init__(self, data: dict[str, Any], source: str, deref: Deref, issues: list[Issue]) -> None:
        self.source = source
        self.issues = issues
        self.schemes = self._schemes(data, deref)
        self.default = self._requirements(data.get("security"), "/security") or ()

    def _schemes(self, data: dict[str, Any], deref: Deref) -> dict[str, SecurityScheme]:
        components = data.get("components")
        raw = components.get("securitySchemes") if isinstance(components, dict) else None
        out: dict[str, SecurityScheme] = {}
        for name, node in raw.items() if isinstance(raw, dict) else ():
            ptr = pointer_join("/components/securitySchemes", name)
            try:
                scheme = deref(node, ptr)
            except SpecError as exc:
                self.issues.append(Issue(exc.source, exc.pointer, f"security scheme skipped: {exc.message}"))
                continue
            if not isinstance(scheme, dict) or not isinstance(scheme.get("type"), str):
                self.issues.append(Issue(self.source, ptr, "security scheme skipped: it needs a 'type'"))
                continue
            flows = scheme.get("flows") if isinstance(scheme.get("flows"), dict) else {}
            out[str(name)] = SecurityScheme(
                name=str(name),
                type=scheme["type"],
                location=scheme.get("in") if isinstance(scheme.get("in"), str) else None,
                param_name=str(scheme["name"]) if scheme.get("name") is not None else None,
                http_scheme=str(scheme["scheme"]).lower() if isinstance(scheme.get("scheme"), str) else None,
                flows={str(k): v for k, v in flows.items() if isinstance(v, dict)},
                openid_url=scheme.get("openIdConnectUrl") if isinstance(scheme.get("openIdConnectUrl"), str) else None,
            )
        return out

    def _requirements(self, value: Any, ptr: str) -> tuple[Requirement, ...] | None:
        """A `security` list as requirement tuples; None when absent or malformed (reported)."""
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            self.issues.append(Issue(self.source, ptr, "'security' must be a list of objects: ignored"))
            return None
        out: list[Requirement] = []
        for requirement in value:
            scopes = {k: tuple(str(s) for s in v) if isinstance(v, list) else () for k, v in requirement.items()}
            out.append(tuple(sorted(scopes.items())))
        return tuple(out)

    def of(self, op: dict[str, Any], op_ptr: str) -> tuple[Requirement, ...]:
        """The operation's own `security`, else the spec's; an empty requirement means optional."""
        own = self._requirements(op.get("security"), pointer_join(op_ptr, "security"))
        return self.default if own is None else own

    def key_parameters(self, security: tuple[Requirement, ...]) -> set[tuple[str, str]]:
        """(location, lower-cased name) of the API-key parameters the operation's schemes fill."""
        out: set[tuple[str, str]] = set()
        for requirement in security:
            for scheme_name, _ in requirement:
                scheme = self.schemes.get(scheme_name)
                if scheme is not None and scheme.type == "apiKey" and scheme.location and scheme.param_name:
                    out.add((scheme.location, scheme.param_name.lower()))
        return out


def credential_issues(
    source: str, schemes: dict[str, SecurityScheme], tools: Sequence[ToolDefinition], api: ApiConfig
) -> list[Issue]:
    """Operations whose security no configured credential meets, and credentials bound to no scheme.

    Those operations stay listed (the operator may add the credential at run time) and fail
    with a clear tool error when called."""
    bound = set(api.credentials)
    issues: list[Issue] = []
    unknown = sorted(bound - set(schemes) - {"*"})
    if unknown:
        issues.append(
            Issue(source, "/components/securitySchemes",
                  f"credentials bound to scheme(s) the spec does not declare: {', '.join(unknown)}")
        )  # fmt: skip
    if "*" in bound:
        return issues
    unmet: dict[str, int] = {}
    for tool in tools:
        security = tool.operation.security
        if security and not any(all(s in bound for s, _ in r) for r in security):
            wanted = " or ".join(" + ".join(s for s, _ in r) for r in security)
            unmet[wanted] = unmet.get(wanted, 0) + 1
    outcome = ("they are sent without credentials (allow_unauthenticated)" if api.allow_unauthenticated
               else "until one is, calls to them fail with a tool error")  # fmt: skip
    for wanted, count in unmet.items():
        issues.append(
            Issue(source, "/components/securitySchemes",
                  f"{count} operation(s) need credentials for {wanted} and none is configured under "
                  f"`credentials`: {outcome}")
        )  # fmt: skip
    return issues
