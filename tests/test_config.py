"""Config files as people write them: the README's examples, YAML's surprises, helpful errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mcp_gateway.config import ConfigError, load_config

README = Path(__file__).resolve().parent.parent / "README.md"


def _yaml_blocks() -> list[tuple[int, str]]:
    text = README.read_text()
    return [(text[: m.start()].count("\n") + 1, m.group(1)) for m in re.finditer(r"```yaml\n(.*?)```", text, re.S)]


def test_the_readme_has_yaml_examples() -> None:
    assert len(_yaml_blocks()) >= 4


@pytest.mark.parametrize(("line", "block"), _yaml_blocks(), ids=lambda v: f"line{v}" if isinstance(v, int) else "")
def test_every_yaml_block_of_the_readme_loads_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: int, block: str
) -> None:
    for name in set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", block)):
        monkeypatch.setenv(name, "value-of-" + name.lower())
    path = tmp_path / "gateway.yaml"
    path.write_text(block)
    load_config(path)  # raises ConfigError, naming the README's fault


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("off", "off"),
        ("on", "on"),
        ("auto", "auto"),
        ("false", "off"),
        ("true", "on"),
        ("OFF", "off"),
        ("no", "off"),
        ("Yes", "on"),
        ("maybe", None),
    ],
)
def test_on_off_settings_take_yaml_words_and_booleans(tmp_path: Path, written: str, meant: str | None) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(f"server:\n  discovery: {written}\nservers:\n  - {{name: v, discovery: {written}, tools: []}}\n")
    if meant is None:
        with pytest.raises(ConfigError, match=r"server\.discovery"):
            load_config(path)
        return
    config = load_config(path)
    assert config.server.discovery == meant and config.servers[0].discovery == meant


def test_yaml_is_read_as_yaml_1_2(tmp_path: Path) -> None:
    """`yes`/`on` are words, `NO` is Norway, `1:30` is a time: YAML 1.1 would make them a boolean,
    a boolean and 90; YAML 1.2 (and people) mean strings. Real booleans still work where one is wanted."""
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "auth:\n  enabled: yes\n  stdio_consumer: NO\n"
        "apis:\n  - {name: a, spec: x.yaml, prefix: on, discovery: true, allow_unauthenticated: on}\n"
        "  - {name: b, spec: y.yaml, prefix: 1:30}\n"
    )
    config = load_config(path)
    assert config.auth.enabled is True and config.auth.stdio_consumer == "NO"
    assert config.apis[0].prefix == "on" and config.apis[0].discovery is True
    assert config.apis[0].allow_unauthenticated is True and config.apis[1].prefix == "1:30"


def test_log_level_in_any_case(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("log_level: WARNING\n")
    assert load_config(path).log_level == "warning"


def test_errors_name_the_file_and_suggest_the_closest_key(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "apis:\n  - {name: a, spec: x.yaml, baseurl: http://x, credentials: {'*': {type: bearer, tokn: t}}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert "apis.0.baseurl: unknown key (did you mean 'base_url'?)" in message
    assert "tokn: unknown key (did you mean 'token'?)" in message
    path.write_text("server: {port: 8080}\nzzz: 1\n")
    with pytest.raises(ConfigError, match=r"zzz: unknown key \(valid keys: "):
        load_config(path)
    path.write_text("server:\n  port: [1,\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: invalid YAML at line \d+, column \d+"):
        load_config(path)
