"""Policy evaluation, for tools and models alike: the most specific level that speaks decides;
deny beats allow there.

Levels, most specific first: the consumer, its team, its organisation, everyone.
At the first level with a policy whose selector matches the tool, a matching
deny refuses and otherwise a matching allow grants. No matching policy at any
level: refused (default deny when authentication is on). The same answer filters
`tools/list` and guards `tools/call`.

Above them, the key: policies naming one gateway key narrow what that key may do and never
widen it (a CI key limited to read-only tools and one cheap model). A key's matching deny
refuses; a key with allow policies about tools may use only the tools they allow, and the
same for models; what passes is then decided by the consumer's levels as usual, so a key
never gets what its consumer may not have. (Were the key just the most specific level, a
tool its policies do not name would fall through to the consumer, undoing the limit.)
JWT and stdio principals have no key level.
"""

from __future__ import annotations

import fnmatch
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable

from mcp_gateway.auth.principal import Principal
from mcp_gateway.definitions import ToolDefinition
from mcp_gateway.store.identities import Policy, Selector

MAX_CACHED_VIEWS = 1024


def selects(selector: Selector, tool: ToolDefinition) -> bool:
    """Whether a selector matches a tool (every given criterion must hold)."""
    if selector.models:
        return False  # a policy about models says nothing of tools
    if selector.apis and not any(fnmatch.fnmatchcase(tool.api, g) for g in selector.apis):
        return False
    if selector.tools and not any(fnmatch.fnmatchcase(tool.catalog_name, g) for g in selector.tools):
        return False
    if selector.tags and not set(selector.tags) & set(tool.tags):
        return False
    if selector.methods and tool.operation.method.upper() not in selector.methods:
        return False
    return selector.read_only is None or bool(tool.annotations.get("readOnlyHint")) == selector.read_only


def selects_model(selector: Selector, model: str) -> bool:
    """Whether a selector matches a model name (a tools-only selector matches none)."""
    if selector.names_tools:
        return False
    return not selector.models or any(fnmatch.fnmatchcase(model, g) for g in selector.models)


class AccessPolicy:
    """An immutable set of policies, indexed by subject."""

    def __init__(self, policies: Iterable[Policy]) -> None:
        self._by_subject: dict[tuple[str, str], list[Policy]] = defaultdict(list)
        for policy in policies:
            self._by_subject[(policy.subject_kind, policy.subject)].append(policy)
        self._views: OrderedDict[tuple[object, ...], frozenset[str]] = OrderedDict()

    def _key_policies(self, principal: Principal) -> list[Policy]:
        if principal.via != "api_key" or principal.credential_id is None:
            return []
        return self._by_subject.get(("key", principal.credential_id), [])

    def _levels(self, principal: Principal) -> list[list[Policy]]:
        keys = [("consumer", principal.consumer)]
        if principal.team:
            keys.append(("team", principal.team))
        if principal.org:
            keys.append(("org", principal.org))
        keys.append(("everyone", "*"))
        return [self._by_subject.get(k, []) for k in keys]

    def _decide(
        self, principal: Principal, matches: Callable[[Selector], bool], speaks: Callable[[Selector], bool]
    ) -> bool:
        key_level = [p for p in self._key_policies(principal) if speaks(p.selector)]
        if key_level:
            matching = [p for p in key_level if matches(p.selector)]
            if any(p.effect == "deny" for p in matching):
                return False
            if not matching and any(p.effect == "allow" for p in key_level):
                return False  # confined to what its allow policies name
        for level in self._levels(principal):
            matching = [p for p in level if matches(p.selector)]
            if matching:
                return not any(p.effect == "deny" for p in matching)
        return False

    def allows(self, principal: Principal, tool: ToolDefinition) -> bool:
        """May `principal` see and call `tool`?"""
        return self._decide(principal, lambda selector: selects(selector, tool), lambda s: s.speaks_of_tools)

    def allows_model(self, principal: Principal, model: str) -> bool:
        """May `principal` use `model` (the name it asks for)? The same levels and rules as for tools."""
        return self._decide(principal, lambda selector: selects_model(selector, model), lambda s: s.speaks_of_models)

    def visible(
        self, principal: Principal, version: int, tools: Iterable[ToolDefinition], view: str | None = None
    ) -> frozenset[str]:
        """Names (as `tools` name them) of those `principal` may use, cached per catalog version and view."""
        # The key id only where the key has policies: other keys of a consumer share its view.
        key_id = principal.credential_id if self._key_policies(principal) else None
        key = (version, view, principal.consumer, principal.team, principal.org, key_id)
        view = self._views.get(key)
        if view is None:
            view = frozenset(t.name for t in tools if self.allows(principal, t))
            self._views[key] = view
            if len(self._views) > MAX_CACHED_VIEWS:
                self._views.popitem(last=False)
        else:
            self._views.move_to_end(key)
        return view
