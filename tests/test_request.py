"""Tests for mcp_gateway.upstream.request: parameter styles, safety checks, bodies, and a real round trip."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcp_gateway.definitions import BodyPlan, EncodingPlan, OperationPlan, ParamPlan
from mcp_gateway.upstream.request import RequestBuildError, UpstreamRequest, build_request
from tests.servers import serve_in_thread

BASE = "https://api.example.com/v1"
COLOR = "blue"
COLORS = ["blue", "black", "brown"]
RGB = {"R": 100, "G": 200, "B": 150}
PNG = b"\x89PNG\r\n\x1a\n\x00\x01binary\xff--"


def param(location: str, style: str, explode: bool, name: str = "color", **kw: Any) -> ParamPlan:
    return ParamPlan(name=name, arg=kw.pop("arg", name), location=location, style=style, explode=explode, **kw)  # type: ignore[arg-type]


def build(
    *params: ParamPlan, path: str = "/x", plan_body: BodyPlan | None = None, base: str = BASE, **args: Any
) -> UpstreamRequest:
    return build_request(OperationPlan(method="post", path=path, params=params, body=plan_body), base, args)


def header_map(req: UpstreamRequest) -> dict[str, str]:
    return dict(req.headers)


# --------------------------------------------------------------------------- style tables (OAS 3.1 §4.8.12.4)

PATH_TABLE = [
    ("simple", False, COLOR, "blue"),
    ("simple", False, COLORS, "blue,black,brown"),
    ("simple", False, RGB, "R,100,G,200,B,150"),
    ("simple", True, COLOR, "blue"),
    ("simple", True, COLORS, "blue,black,brown"),
    ("simple", True, RGB, "R=100,G=200,B=150"),
    ("label", False, COLOR, ".blue"),
    ("label", False, COLORS, ".blue,black,brown"),
    ("label", False, RGB, ".R,100,G,200,B,150"),
    ("label", True, COLOR, ".blue"),
    ("label", True, COLORS, ".blue.black.brown"),
    ("label", True, RGB, ".R=100.G=200.B=150"),
    ("matrix", False, COLOR, ";color=blue"),
    ("matrix", False, COLORS, ";color=blue,black,brown"),
    ("matrix", False, RGB, ";color=R,100,G,200,B,150"),
    ("matrix", True, COLOR, ";color=blue"),
    ("matrix", True, COLORS, ";color=blue;color=black;color=brown"),
    ("matrix", True, RGB, ";R=100;G=200;B=150"),
]


@pytest.mark.parametrize(("style", "explode", "value", "expected"), PATH_TABLE)
def test_path_styles(style: str, explode: bool, value: Any, expected: str) -> None:
    req = build(param("path", style, explode, required=True), path="/colors/{color}/x", color=value)
    assert req.url == f"{BASE}/colors/{expected}/x"


QUERY_TABLE = [
    ("form", False, COLOR, "color=blue"),
    ("form", False, COLORS, "color=blue,black,brown"),
    ("form", False, RGB, "color=R,100,G,200,B,150"),
    ("form", False, "", "color="),
    ("form", True, COLOR, "color=blue"),
    ("form", True, COLORS, "color=blue&color=black&color=brown"),
    ("form", True, RGB, "R=100&G=200&B=150"),
    ("form", True, "", "color="),
    ("spaceDelimited", False, COLORS, "color=blue%20black%20brown"),
    ("spaceDelimited", False, RGB, "color=R%20100%20G%20200%20B%20150"),
    ("pipeDelimited", False, COLORS, "color=blue%7Cblack%7Cbrown"),
    ("pipeDelimited", False, RGB, "color=R%7C100%7CG%7C200%7CB%7C150"),
    ("deepObject", True, RGB, "color[R]=100&color[G]=200&color[B]=150"),
    # Beyond the table (documented choices).
    ("spaceDelimited", True, COLORS, "color=blue&color=black&color=brown"),
    ("pipeDelimited", False, COLOR, "color=blue"),
    ("deepObject", True, {"a": {"b": 1, "c": [1, 2]}}, "color[a][b]=1&color[a][c]=1&color[a][c]=2"),
    ("deepObject", True, {"k]&x=": "v"}, "color[k%5D%26x%3D]=v"),
    ("deepObject", True, COLORS, "color=blue&color=black&color=brown"),
    ("form", True, [{"a": 1}], "color=%7B%22a%22%3A1%7D"),
    ("form", True, [], ""),
    ("form", False, {}, ""),
]


@pytest.mark.parametrize(("style", "explode", "value", "expected"), QUERY_TABLE)
def test_query_styles(style: str, explode: bool, value: Any, expected: str) -> None:
    req = build(param("query", style, explode), color=value)
    assert req.url == (f"{BASE}/x?{expected}" if expected else f"{BASE}/x")


HEADER_TABLE = [
    (False, COLOR, "blue"),
    (False, COLORS, "blue,black,brown"),
    (False, RGB, "R,100,G,200,B,150"),
    (True, COLOR, "blue"),
    (True, COLORS, "blue,black,brown"),
    (True, RGB, "R=100,G=200,B=150"),
]


@pytest.mark.parametrize(("explode", "value", "expected"), HEADER_TABLE)
def test_header_simple(explode: bool, value: Any, expected: str) -> None:
    req = build(param("header", "simple", explode, name="X-Color", arg="color"), color=value)
    assert req.headers == [("X-Color", expected)]


COOKIE_TABLE = [
    (False, COLOR, "color=blue"),
    (False, COLORS, "color=blue,black,brown"),
    (False, RGB, "color=R,100,G,200,B,150"),
    (True, COLOR, "color=blue"),
    (True, COLORS, "color=blue; color=black; color=brown"),
    (True, RGB, "R=100; G=200; B=150"),
]


@pytest.mark.parametrize(("explode", "value", "expected"), COOKIE_TABLE)
def test_cookie_form(explode: bool, value: Any, expected: str) -> None:
    req = build(param("cookie", "form", explode), color=value)
    assert req.headers == [("Cookie", expected)]


def test_all_cookies_share_one_header_and_values_are_encoded() -> None:
    req = build(
        param("cookie", "form", True, name="session"),
        param("cookie", "form", True, name="theme"),
        session="abc; admin=1",
        theme="dark",
    )
    assert req.headers == [("Cookie", "session=abc%3B%20admin%3D1; theme=dark")]


# --------------------------------------------------------------------------- primitives, encoding, options


def test_primitives_booleans_numbers_and_absent_values() -> None:
    req = build(
        param("query", "form", True, name="yes"),
        param("query", "form", True, name="no"),
        param("query", "form", True, name="zero"),
        param("query", "form", True, name="pi"),
        param("query", "form", True, name="skip"),
        param("query", "form", True, name="gone"),
        param("query", "form", True, name="items"),
        yes=True,
        no=False,
        zero=0,
        pi=3.5,
        skip=None,
        items=[True, None, 2],
    )
    assert req.url == f"{BASE}/x?yes=true&no=false&zero=0&pi=3.5&items=true&items=2"


def test_required_parameter_missing_is_rejected() -> None:
    with pytest.raises(RequestBuildError, match="'limit'") as info:
        build(param("query", "form", True, name="limit", required=True))
    assert info.value.argument == "limit"
    with pytest.raises(RequestBuildError, match="'limit'"):
        build(param("query", "form", True, name="limit", required=True), limit=None)


def test_query_encoding_strict() -> None:
    req = build(param("query", "form", True, name="q k"), **{"q k": "a b&c=d#e+f/g?h%i~j.é"})
    assert urlsplit(req.url).query == "q%20k=a%20b%26c%3Dd%23e%2Bf%2Fg%3Fh%25i~j.%C3%A9"


def test_allow_reserved_keeps_reserved_but_never_injects_parameters() -> None:
    value = "a/b:c?d@e!f$g'h(i)j*k,l;m[n]o&p=q#r+s t%u"
    req = build(param("query", "form", True, name="q", allow_reserved=True), q=value)
    query = urlsplit(req.url).query
    assert query == "q=a/b:c?d@e!f$g'h(i)j*k,l;m[n]o%26p%3Dq%23r%2Bs%20t%25u"
    assert parse_qsl(query) == [("q", value)]


def test_content_parameter_is_compact_json() -> None:
    value = {"a": [1, "é"], "b": None}
    req = build(
        param("query", "form", True, name="filter", content_type="application/json"),
        param("header", "simple", False, name="X-Filter", arg="hfilter", content_type="application/json"),
        param("path", "simple", False, name="key", content_type="application/json", required=True),
        path="/things/{key}",
        filter=value,
        hfilter=value,
        key="a/b",
    )
    split = urlsplit(req.url)
    assert split.path == "/v1/things/%22a%2Fb%22"
    assert split.query == "filter=%7B%22a%22%3A%5B1%2C%22%C3%A9%22%5D%2C%22b%22%3Anull%7D"
    assert unquote(split.query.removeprefix("filter=")) == '{"a":[1,"é"],"b":null}'
    assert header_map(req)["X-Filter"] == '{"a":[1,"\\u00e9"],"b":null}'


def test_swagger2_tsv_delimiter() -> None:
    req = build(param("query", "form", False, name="ids", delimiter="\t"), ids=["a", "b c", 3])
    assert req.url == f"{BASE}/x?ids=a%09b%20c%093"


def test_accept_and_no_other_headers() -> None:
    plan = OperationPlan(method="get", path="/x", accept="application/json, application/problem+json")
    req = build_request(plan, BASE, {})
    assert req == UpstreamRequest(
        method="GET", url=f"{BASE}/x", headers=[("Accept", "application/json, application/problem+json")], content=None
    )
    assert build_request(OperationPlan(method="get", path="/x"), BASE, {}).headers == []


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("https://api.example.com/v1", "https://api.example.com/v1/pets/1"),
        ("https://api.example.com/v1/", "https://api.example.com/v1/pets/1"),
        ("https://api.example.com", "https://api.example.com/pets/1"),
        ("https://api.example.com/", "https://api.example.com/pets/1"),
        ("http://127.0.0.1:8080/a/b/", "http://127.0.0.1:8080/a/b/pets/1"),
    ],
)
def test_base_url_joining(base: str, expected: str) -> None:
    req = build(param("path", "simple", False, name="id", required=True), path="/pets/{id}", base=base, id=1)
    assert req.url == expected


def test_invalid_base_url_rejected() -> None:
    with pytest.raises(RequestBuildError, match="base URL"):
        build(base="ftp://example.com")
    with pytest.raises(RequestBuildError, match="base URL"):
        build(base="https://example.com/v1?x=1")


# --------------------------------------------------------------------------- path traversal


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("../admin", "..%2Fadmin"),
        ("a/b", "a%2Fb"),
        ("a?b=c", "a%3Fb%3Dc"),
        ("a#x", "a%23x"),
        ("%2e%2e", "%252e%252e"),
        ("%2F", "%252F"),
        ("..%2f..%2fadmin", "..%252f..%252fadmin"),
        ("...", "..."),
        ("a;b=c,d", "a%3Bb%3Dc%2Cd"),
        ("\\..\\", "%5C..%5C"),
        ("x y\r\n", "x%20y%0D%0A"),
        ("é", "%C3%A9"),
    ],
)
@pytest.mark.parametrize("style", ["simple", "label", "matrix"])
def test_path_values_cannot_change_path_structure(value: str, encoded: str, style: str) -> None:
    p = param("path", style, False, name="id", required=True)
    req = build(p, path="/users/{id}/profile", id=value)
    prefix = {"simple": "", "label": ".", "matrix": ";id="}[style]
    assert req.url == f"{BASE}/users/{prefix}{encoded}/profile"
    split = urlsplit(req.url)
    assert split.netloc == "api.example.com"
    assert not split.query and not split.fragment
    assert split.path.split("/") == ["", "v1", "users", prefix + encoded, "profile"]
    assert unquote(encoded) == value


@pytest.mark.parametrize("value", [".", "..", "", [], {}, [""], [".."]])
def test_dot_and_empty_path_values_rejected(value: Any) -> None:
    with pytest.raises(RequestBuildError, match="'id'") as info:
        build(param("path", "simple", False, name="id", required=True), path="/users/{id}", id=value)
    assert info.value.argument == "id"


def test_label_serialising_to_dot_segment_rejected() -> None:
    with pytest.raises(RequestBuildError, match="'id'"):
        build(param("path", "label", True, name="id", required=True), path="/u/{id}", id=["", ""])
    with pytest.raises(RequestBuildError, match="'id'"):
        build(param("path", "label", False, name="id", required=True), path="/u/{id}", id=".")


def test_dots_inside_a_segment_are_sent() -> None:
    """Only a whole "." or ".." segment is refused (normalisation would remove it), wherever it comes from."""
    params = (param("path", "simple", False, name="a", required=True), param("path", "label", False, name="b"))
    assert build(*params, path="/u/{a}{b}", a="x", b=".").url == f"{BASE}/u/x.."
    assert build(*params, path="/u/{a}{b}", a=".", b="x").url == f"{BASE}/u/..x"
    assert build(params[0], path="/files/{a}.json", a=".").url == f"{BASE}/files/..json"
    assert build(param("path", "matrix", False, name="a"), path="/m/{a}", a="..").url == f"{BASE}/m/;a=.."
    with pytest.raises(RequestBuildError, match="'a, b'"):
        build(*params, path="/u/{a}{b}", a=".", b="")  # label "" is "."


def test_dot_segment_in_template_rejected_by_final_check() -> None:
    with pytest.raises(RequestBuildError, match="escapes the base URL"):
        build(path="/a/../../admin")
    with pytest.raises(RequestBuildError, match="segment"):
        build(param("path", "simple", False, name="id", required=True), path="/a/{id}/../x", id="1")


def test_path_parameter_missing_from_plan_rejected() -> None:
    with pytest.raises(RequestBuildError, match="'id'"):
        build(path="/users/{id}")


# --------------------------------------------------------------------------- header injection


@pytest.mark.parametrize("value", ["a\r\nX-Admin: 1", "a\nb", "a\rb", "a\x00b", "café", ["ok", "a\r\nb"], {"k": "\n"}])
def test_header_injection_rejected(value: Any) -> None:
    with pytest.raises(RequestBuildError, match="'trace'") as info:
        build(param("header", "simple", False, name="X-Trace", arg="trace"), trace=value)
    assert info.value.argument == "trace"


def test_header_value_with_tab_and_outer_blanks() -> None:
    req = build(param("header", "simple", False, name="X-Trace", arg="trace"), trace="  a\tb ")
    assert req.headers == [("X-Trace", "a\tb")]


# --------------------------------------------------------------------------- bodies


def test_json_body_from_single_argument() -> None:
    body = BodyPlan(media_type="application/merge-patch+json", kind="json", required=True, arg="body")
    req = build(plan_body=body, body={"name": "Ève", "tags": ["a", "b"], "n": None})
    assert req.content == '{"name":"Ève","tags":["a","b"],"n":null}'.encode()
    assert req.headers == [("Content-Type", "application/merge-patch+json")]


def test_json_body_from_fields() -> None:
    body = BodyPlan(media_type="application/json", kind="json", fields={"pet_name": "name", "age": "age"})
    req = build(param("query", "form", True, name="q"), plan_body=body, pet_name="Rex", q="1")
    assert json.loads(req.content or b"") == {"name": "Rex"}
    assert req.url == f"{BASE}/x?q=1"
    assert build(plan_body=body).content is None
    assert build(plan_body=body).headers == []
    required = BodyPlan(media_type="application/json", kind="json", required=True, fields={"age": "age"})
    assert build(plan_body=required).content == b"{}"


def test_body_required_missing_rejected() -> None:
    body = BodyPlan(media_type="application/json", kind="json", required=True, arg="payload")
    with pytest.raises(RequestBuildError, match="'payload'"):
        build(plan_body=body)
    optional = BodyPlan(media_type="application/json", kind="json", arg="payload")
    assert build(plan_body=optional).content is None


def test_form_body() -> None:
    body = BodyPlan(
        media_type="application/x-www-form-urlencoded",
        kind="form",
        arg="body",
        encoding={
            "meta": EncodingPlan(content_type="application/json"),
            "filter": EncodingPlan(style="deepObject", explode=True),
            "ids": EncodingPlan(style="form", explode=False),
            "url": EncodingPlan(allow_reserved=True),
        },
    )
    value = {
        "name": "a b+c&d=e",
        "tags": ["x", "y"],
        "nested": {"k": 1},
        "meta": [1, 2],
        "filter": {"color": "red"},
        "ids": [1, 2],
        "url": "http://x/y?z",
        "none": None,
        "flag": True,
    }
    req = build(plan_body=body, body=value)
    assert req.headers == [("Content-Type", "application/x-www-form-urlencoded")]
    content = (req.content or b"").decode()
    assert content == (
        "name=a%20b%2Bc%26d%3De&tags=x&tags=y&nested=%7B%22k%22%3A1%7D&meta=%5B1%2C2%5D"
        "&filter[color]=red&ids=1%2C2&url=http://x/y?z&flag=true"
    )
    assert parse_qsl(content)[0] == ("name", "a b+c&d=e")


def test_form_body_must_be_object() -> None:
    body = BodyPlan(media_type="application/x-www-form-urlencoded", kind="form", arg="body")
    with pytest.raises(RequestBuildError, match="'body'"):
        build(plan_body=body, body=["a"])


def parse_multipart(req: UpstreamRequest) -> list[tuple[str, str | None, str | None, bytes]]:
    """(name, filename, content type, payload) of each part, parsed by the stdlib email parser."""
    content_type = header_map(req)["Content-Type"]
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + req.content)
    assert message.is_multipart()
    parts = []
    for part in message.iter_parts():
        explicit = part["Content-Type"]
        parts.append(
            (
                part.get_param("name", header="content-disposition"),
                part.get_filename(),
                explicit,
                part.get_payload(decode=True),
            )
        )
    return parts


MULTIPART = BodyPlan(
    media_type="multipart/form-data",
    kind="multipart",
    fields={"title": "title", "tags": "tags", "meta": "meta", "file": "file", "photo": "photo", "count": "count"},
    encoding={"count": EncodingPlan(content_type="text/plain")},
    binary_fields=frozenset({"file", "photo"}),
)


def test_multipart_body_with_base64_and_data_url_files() -> None:
    req = build(
        plan_body=MULTIPART,
        title='Hé "quoted"',
        tags=["a", "b"],
        meta={"k": [1]},
        file=base64.b64encode(PNG).decode(),
        photo="data:image/png;base64," + base64.b64encode(PNG).decode(),
        count=3,
    )
    content_type = header_map(req)["Content-Type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    assert parse_multipart(req) == [
        ("title", None, None, 'Hé "quoted"'.encode()),
        ("tags", None, None, b"a"),
        ("tags", None, None, b"b"),
        ("meta", None, "application/json", b'{"k":[1]}'),
        ("file", "file", "application/octet-stream", PNG),
        ("photo", "photo", "image/png", PNG),
        ("count", None, "text/plain", b"3"),
    ]


def test_multipart_array_of_files_is_one_file_part_each() -> None:
    req = build(plan_body=MULTIPART, photo=[base64.b64encode(PNG).decode(), base64.b64encode(b"second").decode()])
    assert parse_multipart(req) == [
        ("photo", "photo", "application/octet-stream", PNG),
        ("photo", "photo", "application/octet-stream", b"second"),
    ]


def test_multipart_urlsafe_base64_unpadded_and_wrapped() -> None:
    data = bytes(range(256))
    text = base64.urlsafe_b64encode(data).decode().rstrip("=")
    text = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    req = build(plan_body=MULTIPART, file=text)
    assert parse_multipart(req) == [("file", "file", "application/octet-stream", data)]


@pytest.mark.parametrize(
    "value", ["not base64!", "data:image/png;base64,@@@", "data:image/png\r\nX-Evil: 1;base64,AAAA", "data:nocomma", 12]
)
def test_multipart_invalid_file_rejected(value: Any) -> None:
    with pytest.raises(RequestBuildError, match="'photo'") as info:
        build(plan_body=MULTIPART, photo=value)
    assert info.value.argument == "photo"


def test_multipart_from_single_body_argument_names_the_property() -> None:
    body = BodyPlan(media_type="multipart/form-data", kind="multipart", arg="body", binary_fields=frozenset({"f"}))
    with pytest.raises(RequestBuildError, match=r"'body\.f'"):
        build(plan_body=body, body={"f": "%%%"})


def test_text_body() -> None:
    body = BodyPlan(media_type="text/plain", kind="text", arg="body", required=True)
    req = build(plan_body=body, body="héllo\n")
    assert req.content == "héllo\n".encode()
    assert req.headers == [("Content-Type", "text/plain")]


@pytest.mark.parametrize(
    ("media_type", "value", "expected_type"),
    [
        ("application/octet-stream", base64.b64encode(PNG).decode(), "application/octet-stream"),
        ("image/png", "data:image/jpeg;base64," + base64.b64encode(PNG).decode(), "image/png"),
        ("image/*", "data:image/png;base64," + base64.b64encode(PNG).decode(), "image/png"),
        ("*/*", base64.b64encode(PNG).decode(), "application/octet-stream"),
        ("*/*", "data:text/plain;charset=utf-8;base64," + base64.b64encode(PNG).decode(), "text/plain;charset=utf-8"),
    ],
)
def test_binary_body(media_type: str, value: str, expected_type: str) -> None:
    body = BodyPlan(media_type=media_type, kind="binary", arg="data", required=True)
    req = build(plan_body=body, data=value)
    assert req.content == PNG
    assert req.headers == [("Content-Type", expected_type)]


def test_binary_body_percent_encoded_data_url_and_invalid() -> None:
    body = BodyPlan(media_type="*/*", kind="binary", arg="data", required=True)
    req = build(plan_body=body, data="data:,a%20b")
    assert (req.content, req.headers) == (b"a b", [("Content-Type", "application/octet-stream")])
    with pytest.raises(RequestBuildError, match="'data'"):
        build(plan_body=body, data="###")


def test_unencodable_surrogate_rejected() -> None:
    with pytest.raises(RequestBuildError, match="'q'"):
        build(param("query", "form", True, name="q"), q="\ud800")
    with pytest.raises(RequestBuildError, match="'body'"):
        build(plan_body=BodyPlan(media_type="application/json", kind="json", arg="body"), body="\ud800")


# --------------------------------------------------------------------------- real round trip


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    form: list[Any] = []
    if request.headers.get("content-type", "").startswith("multipart/"):
        async with request.form() as parsed:
            for key, item in parsed.multi_items():
                if isinstance(item, UploadFile):
                    data = await item.read()
                    form.append([key, item.filename, item.content_type, base64.b64encode(data).decode()])
                else:
                    form.append([key, item])
    return JSONResponse(
        {
            "method": request.method,
            "raw_path": request.scope["raw_path"].decode("latin-1"),
            "query": request.scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.scope["headers"]],
            "body": base64.b64encode(body).decode(),
            "form": form,
        }
    )


@pytest.fixture
def echo_server() -> Iterator[str]:
    app = Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])])
    with serve_in_thread(app) as url:
        yield url + "/api/v1/"


@pytest.mark.anyio
async def test_round_trip_through_real_server(echo_server: str) -> None:
    plan = OperationPlan(
        method="post",
        path="/items/{id}/files",
        params=(
            param("path", "simple", False, name="id", required=True),
            param("query", "form", True, name="tag"),
            param("query", "deepObject", True, name="filter"),
            param("query", "pipeDelimited", False, name="ids"),
            param("query", "form", True, name="next", allow_reserved=True),
            param("header", "simple", True, name="X-Dims", arg="dims"),
            param("cookie", "form", True, name="session"),
            param("cookie", "form", False, name="pref"),
        ),
        body=MULTIPART,
        accept="application/json",
    )
    arguments = {
        "id": "a/b?c#d %2F..",
        "tag": ["x y", "é&z"],
        "filter": {"color": "red", "size": {"min": 1}},
        "ids": [1, 2],
        "next": "/p?q=1&r",
        "dims": {"w": 2, "h": 3},
        "session": "s; x=1",
        "pref": ["a", "b"],
        "title": "Hello ✓",
        "tags": ["one", "two"],
        "meta": {"k": True},
        "file": base64.b64encode(PNG).decode(),
        "photo": "data:image/png;base64," + base64.b64encode(PNG).decode(),
        "count": 7,
    }
    req = build_request(plan, echo_server, arguments)
    assert req.url.startswith(echo_server)

    async with httpx2.AsyncClient(trust_env=False, timeout=10) as client:
        response = await client.request(req.method, req.url, headers=req.headers, content=req.content)
    assert response.status_code == 200
    got = response.json()

    assert got["method"] == "POST"
    assert got["raw_path"] == "/api/v1/items/a%2Fb%3Fc%23d%20%252F../files"
    assert got["query"] == (
        "tag=x%20y&tag=%C3%A9%26z&filter[color]=red&filter[size][min]=1&ids=1%7C2&next=/p?q%3D1%26r"
    )
    received = {k: v for k, v in got["headers"]}
    assert received["x-dims"] == "w=2,h=3"
    assert received["cookie"] == "session=s%3B%20x%3D1; pref=a,b"
    assert received["accept"] == "application/json"
    assert received["content-type"] == header_map(req)["Content-Type"]
    assert base64.b64decode(got["body"]) == req.content
    png64 = base64.b64encode(PNG).decode()
    assert got["form"] == [
        ["title", "Hello ✓"],
        ["tags", "one"],
        ["tags", "two"],
        ["meta", '{"k":true}'],
        ["file", "file", "application/octet-stream", png64],
        ["photo", "photo", "image/png", png64],
        ["count", "7"],
    ]

    json_plan = OperationPlan(
        method="put",
        path="/items/{id}",
        params=(param("path", "matrix", True, name="id", required=True),),
        body=BodyPlan(media_type="application/json", kind="json", arg="body", required=True),
    )
    req = build_request(json_plan, echo_server.rstrip("/"), {"id": {"a": "1;2", "b": "."}, "body": {"ü": [1]}})
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as client:
        response = await client.request(req.method, req.url, headers=req.headers, content=req.content)
    got = response.json()
    assert got["raw_path"] == "/api/v1/items/;a=1%3B2;b=."
    assert got["query"] == ""
    assert base64.b64decode(got["body"]) == '{"ü":[1]}'.encode()
    assert dict((k, v) for k, v in got["headers"])["content-type"] == "application/json"


# ------------------------------------------------------------------ regressions found by the fidelity benchmark


def test_path_template_fragment_is_not_sent() -> None:
    # AWS specs in the APIs.guru corpus tell operations on one path apart by a fragment.
    p = param("path", "simple", False, name="MeetingId", required=True)
    q = param("query", "form", True, name="operation", required=True)
    req = build(p, q, path="/meetings/{MeetingId}/transcription#operation=stop", MeetingId="m 1", operation="stop")
    assert req.url == f"{BASE}/meetings/m%201/transcription?operation=stop"
    assert build(path="/#X-Amz-Target=Athena.GetQuery").url == f"{BASE}/"
    # A "#" inside braces is part of a variable name, not a fragment.
    assert build(param("path", "simple", False, name="#a", required=True), path="/x/{#a}", **{"#a": "v"}).url == (
        f"{BASE}/x/v"
    )


def test_path_template_with_its_own_query() -> None:
    lat = param("path", "simple", False, name="lat", required=True)
    lon = param("path", "simple", False, name="lon", required=True)
    key = param("query", "form", True, name="key")
    req = build(lat, lon, key, path="/alerts?lat={lat}&lon={lon}", lat=1.5, lon="a&b", key="k")
    assert req.url == f"{BASE}/alerts?lat=1.5&lon=a%26b&key=k"
    # Literal parts are kept; a template without variables still works.
    assert build(path="/bucket?tagging").url == f"{BASE}/bucket?tagging"
    assert build(key, path="/bucket?versions&x=1#frag", key="k").url == f"{BASE}/bucket?versions&x=1&key=k"


def test_path_template_query_variable_declared_as_query_parameter_is_sent_once() -> None:
    # medium.com: `/search/users?query={query}` with `query` declared `in: query`; ingest adds an
    # implicit path parameter for the variable, the query parameter is the one sent.
    implicit = param("path", "simple", False, name="query", required=True)
    declared = param("query", "form", True, name="query", arg="query_query", required=True)
    req = build(implicit, declared, path="/search/users?query={query}", query="x", query_query="a b")
    assert req.url == f"{BASE}/search/users?query=a%20b"


def test_form_body_delimiters_are_percent_encoded() -> None:
    body = BodyPlan(
        media_type="application/x-www-form-urlencoded",
        kind="form",
        arg="body",
        encoding={
            "ids": EncodingPlan(style="form", explode=False),
            "point": EncodingPlan(style="form", explode=False),
            "raw": EncodingPlan(style="form", explode=False, allow_reserved=True),
        },
    )
    req = build(plan_body=body, body={"ids": [1, "a,b"], "point": {"x": 1}, "raw": ["p/q", "r"]})
    assert req.content == b"ids=1%2Ca%2Cb&point=x%2C1&raw=p/q,r"
    assert parse_qsl((req.content or b"").decode()) == [("ids", "1,a,b"), ("point", "x,1"), ("raw", "p/q,r")]
    # A query string keeps the style table's literal commas.
    assert build(param("query", "form", False, name="ids"), ids=[1, 2]).url == f"{BASE}/x?ids=1,2"


def test_integral_floats_are_sent_as_integers() -> None:
    q = param("query", "form", True, name="n")
    assert build(q, n=5.0).url == f"{BASE}/x?n=5"
    assert build(q, n=-0.0).url == f"{BASE}/x?n=0"
    assert build(q, n=2.5).url == f"{BASE}/x?n=2.5"
    assert build(q, n=1e300).url == f"{BASE}/x?n=1e%2B300"  # not exact as an integer: left as it is
    assert build(q, n=[1.0, 1.5]).url == f"{BASE}/x?n=1&n=1.5"
    path = param("path", "simple", False, name="id", required=True)
    assert build(path, path="/items/{id}", id=42.0).url == f"{BASE}/items/42"
    req = build(param("header", "simple", False, name="X-N"), **{"X-N": 3.0})
    assert ("X-N", "3") in req.headers


@pytest.mark.parametrize("location", ["query", "header", "cookie"])
@pytest.mark.parametrize("value", [[], {}, [None]])
def test_required_parameter_with_an_empty_value_is_an_error(location: str, value: Any) -> None:
    style = "simple" if location == "header" else "form"
    with pytest.raises(RequestBuildError, match=r"'tags'.*empty value sends nothing"):
        build(param(location, style, True, name="tags", required=True), tags=value)
    # Optional: left out, as RFC 6570 says.
    req = build(param(location, style, True, name="tags"), tags=value)
    assert req.url == f"{BASE}/x" and not [h for h in req.headers if h[0] in ("tags", "Cookie")]
