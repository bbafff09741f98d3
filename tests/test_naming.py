"""Tests for mcp_gateway.openapi.naming: tool and argument names every LLM API accepts."""

from __future__ import annotations

import re

import pytest

from mcp_gateway.openapi.naming import (
    MAX_NAME,
    argument_name,
    clean_tool_name,
    operation_name,
    unique,
    with_prefix,
)

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ARG_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,64}$")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("repos/get-content", "repos_get-content"),
        ("listPets", "listPets"),
        ("  spaced id  ", "spaced_id"),
        ("a..b::c", "a_b_c"),
        ("__private__", "private"),
        ("pets.list", "pets_list"),
        ("获取", "operation"),
        ("", "operation"),
    ],
)
def test_clean_tool_name(raw: str, expected: str) -> None:
    assert clean_tool_name(raw) == expected


@pytest.mark.parametrize(
    ("op_id", "method", "path", "expected"),
    [
        ("repos/get-content", "get", "/x", "repos_get-content"),
        (None, "get", "/pets/{petId}", "get_pets_petId"),
        (None, "POST", "/pets/{petId}/photos", "post_pets_petId_photos"),
        (None, "get", "/", "get"),
        (None, "get", "/v1/users.json", "get_v1_users_json"),
        ("   ", "delete", "/a/{b}", "delete_a_b"),
        ("获取", "get", "/unicode", "get_unicode"),
    ],
)
def test_operation_name(op_id: str | None, method: str, path: str, expected: str) -> None:
    assert operation_name(op_id, method, path) == expected


def test_long_names_are_cut_with_a_stable_hash() -> None:
    a = "x" * 50 + "Alpha" * 10
    b = "x" * 50 + "Beta" * 10
    cut_a, cut_b = with_prefix(None, a), with_prefix(None, b)
    assert len(cut_a) == len(cut_b) == MAX_NAME
    assert cut_a != cut_b
    assert cut_a == with_prefix(None, a)  # stable
    assert re.fullmatch(r"x{50}AlphaAl_[0-9a-f]{6}", cut_a)
    assert with_prefix(None, "short") == "short"
    assert with_prefix(None, "y" * 64) == "y" * 64


def test_prefix() -> None:
    assert with_prefix("gh", "listRepos") == "gh_listRepos"
    assert with_prefix("my api!", "op") == "my_api_op"
    long = with_prefix("gh", "z" * 100)
    assert len(long) == MAX_NAME and long.startswith("gh_zzz")
    for prefix in ("p" * 40, "p" * 63, "p" * 200):
        name = with_prefix(prefix, "operationName")
        assert TOOL_NAME.match(name), name
        assert "operation" in name


def test_unique() -> None:
    taken: set[str] = set()
    assert [unique("a", taken) for _ in range(3)] == ["a", "a_2", "a_3"]
    long = "n" * 64
    first, second = unique(long, taken), unique(long, taken)
    assert first == long and len(second) == 64 and second.endswith("_2") and second != first
    assert {"a", "a_2", "a_3", first, second} == taken


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("filter[status]", "filter_status"),
        ("X-Request-Id", "X-Request-Id"),
        ("page.size", "page.size"),
        ("$top", "top"),
        ("a b", "a_b"),
        ("[]", "arg"),
        ("ünïcode", "n_code"),
    ],
)
def test_argument_name(raw: str, expected: str) -> None:
    assert argument_name(raw) == expected
    assert ARG_NAME.match(argument_name(raw))


def test_long_argument_names() -> None:
    a, b = argument_name("p" * 80 + "a"), argument_name("p" * 80 + "b")
    assert len(a) == len(b) == 64 and a != b and ARG_NAME.match(a)
