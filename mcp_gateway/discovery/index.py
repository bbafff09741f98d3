"""Ranked tool search: BM25 over names, paths, parameter names, tags and descriptions.

Each tool is one document of weighted fields (a name word counts three times, a
path or parameter word twice, a description word once), a light form of BM25F.
Words are split at camelCase, `_`, `-`, `/` and `.`, lower-cased, and reduced by
a small suffix stemmer, so "listPullRequests", "pull request" and "/pulls" meet.

A dependency was not worth it: BM25 over an inverted index is a few dozen lines,
while the packaged implementations pull in numpy/scipy.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from mcp_gateway.definitions import ToolDefinition

K1 = 1.2
B = 0.75
NAME_WEIGHT = 3
PATH_WEIGHT = 2
# A tool whose name the query covers entirely ("list pulls" for pulls/list) is preferred
# over a longer name that merely contains the same words.
NAME_COVERAGE_BOOST = 0.5

_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_STOP = frozenset(
    ("a", "an", "the", "of", "for", "to", "in", "on", "by", "with", "and", "or", "from", "at", "as", "is", "are",
     "be", "this", "that", "it", "its", "into", "via", "all", "any", "i", "you", "your", "we", "our",
     "please", "using", "use", "can")
)  # fmt: skip
_SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "ied", "es", "ed", "s")
# One word for each thing: abbreviations common in paths and operationIds, and the verbs
# people use for the same action (applied to tools and queries alike).
_ALIASES = {
    "repo": "repository", "org": "organization", "msg": "message", "config": "configuration",
    "auth": "authentication", "info": "information", "desc": "description", "del": "delete",
    "img": "image", "doc": "document", "env": "environment", "app": "application", "pic": "image",
    "photo": "image", "picture": "image", "song": "track", "remove": "delete", "destroy": "delete",
    "erase": "delete", "fetch": "get", "retrieve": "get", "read": "get", "show": "get", "view": "get",
    "open": "create", "new": "create", "make": "create", "add": "create", "insert": "create",
    "modify": "update", "edit": "update", "change": "update", "enumerate": "list", "find": "search",
    "lookup": "search", "query": "search", "my": "me", "mine": "me", "own": "me",
}  # fmt: skip


def stem(word: str) -> str:
    """A deliberately small stemmer: plural and verb endings only."""
    if word.endswith(("ss", "us", "is")):
        return word  # address, status, analysis: not plurals
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            base = word[: -len(suffix)]
            if suffix in ("ies", "ied"):
                return base + "y"
            if suffix == "es" and not base.endswith(("s", "x", "z", "ch", "sh")):
                return base + "e"
            return base
    return word


def tokens(text: str) -> list[str]:
    """Search terms of a text: split, lower-cased, stop words dropped, stemmed."""
    out = []
    for raw in _WORD.findall(text):
        word = raw.lower()
        if word not in _STOP and (len(word) > 1 or word.isdigit()):
            word = stem(word)
            out.append(_ALIASES.get(word, word))
    return out


def _name_terms(tool: ToolDefinition) -> frozenset[str]:
    return frozenset(tokens(tool.operation_id or tool.name.replace("_", " ")))


def _document(tool: ToolDefinition) -> Counter[str]:
    terms: Counter[str] = Counter()
    for term in tokens(tool.name.replace("_", " ")) + tokens(tool.operation_id or ""):
        terms[term] += NAME_WEIGHT
    path_words = [*tokens(tool.operation.path), stem(tool.operation.method.lower())]
    param_words = [t for p in tool.input_schema.get("properties", {}) for t in tokens(p)]
    for term in path_words + param_words + [t for tag in tool.tags for t in tokens(tag)]:
        terms[term] += PATH_WEIGHT
    for term in tokens(tool.title or "") + tokens(tool.description):
        terms[term] += 1
    return terms


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result."""

    tool: ToolDefinition
    score: float


class ToolIndex:
    """An inverted index of tools; build once per catalog version, query many times."""

    def __init__(self, tools: Iterable[ToolDefinition]) -> None:
        self.tools: list[ToolDefinition] = list(tools)
        self._postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self._lengths: list[int] = []
        self._names = [_name_terms(tool) for tool in self.tools]
        for doc_id, tool in enumerate(self.tools):
            terms = _document(tool)
            self._lengths.append(sum(terms.values()))
            for term, count in terms.items():
                self._postings[term].append((doc_id, count))
        n = len(self.tools)
        self._avg_length = (sum(self._lengths) / n) if n else 0.0
        self._idf = {
            term: math.log(1 + (n - len(posts) + 0.5) / (len(posts) + 0.5)) for term, posts in self._postings.items()
        }

    def search(
        self, query: str, limit: int = 5, *, api: str | None = None, allowed: frozenset[str] | None = None
    ) -> list[Hit]:
        """The best `limit` tools for `query`, best first; optionally only one API's, or only `allowed` ones."""
        scores: dict[int, float] = defaultdict(float)
        terms = set(tokens(query))
        for term in terms:
            idf = self._idf.get(term)
            if idf is None:
                continue
            for doc_id, count in self._postings[term]:
                norm = K1 * (1 - B + B * self._lengths[doc_id] / self._avg_length)
                scores[doc_id] += idf * count * (K1 + 1) / (count + norm)
        for doc_id in scores:
            name = self._names[doc_id]
            if name:
                scores[doc_id] *= 1 + NAME_COVERAGE_BOOST * len(name & terms) / len(name)
        ranked = sorted(scores.items(), key=lambda item: (-item[1], self.tools[item[0]].name))
        hits = []
        for doc_id, score in ranked:
            tool = self.tools[doc_id]
            if (api is None or tool.api == api) and (allowed is None or tool.name in allowed):
                hits.append(Hit(tool, round(score, 3)))
                if len(hits) == limit:
                    break
        return hits
