"""The web console at /ui in a real browser: Debian's headless Chromium driven by Selenium, against
a real gateway (real echo upstream, a fake OpenAI provider on loopback) after real tool calls over
/mcp and model calls over /v1. Login (a wrong admin token refused, the cookie's flags), every page
with the data of those calls, a key created in the UI working on /mcp and /v1 until it is revoked
in the UI, CSRF refusals, no secret on any page, and no error in the browser's console.

Screenshots of each page go to $MCP_GATEWAY_CONSOLE_SCREENSHOTS when set (the README's are made
with `MCP_GATEWAY_CONSOLE_SCREENSHOTS=docs/console`), else to a temporary folder."""

from __future__ import annotations

import csv
import io
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.expected_conditions import alert_is_present
from selenium.webdriver.support.wait import WebDriverWait

from mcp_gateway.auth import keys
from mcp_gateway.config import GatewayConfig
from mcp_gateway.gateway import Gateway
from mcp_gateway.store.identities import Selector
from tests.conftest import ADMIN_TOKEN, ECHO_SPEC
from tests.fake_llm import FakeProvider
from tests.servers import serve_in_thread

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
OPENAI_KEY = "sk-console-upstream-secret-9a8b7c6d5e"
TOOL_CALLS = 3  # getItem x3 by alice over /mcp
MODEL_CALLS = 2  # gpt-test x2 by alice over /v1


@dataclass
class Setup:
    base: str
    gateway: Gateway
    alice_key: str
    fake: FakeProvider


def _mcp_client(url: str, key: str) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
    return Client(streamable_http_client(url, http_client=http))


def _chat(base: str, key: str, text: str) -> httpx2.Response:
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": text}]}
    return httpx2.post(base + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    provider = FakeProvider(OPENAI_KEY)
    with serve_in_thread(provider.app()) as url:
        provider.url = url
        yield provider


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, upstream: str, fake: FakeProvider) -> Iterator[Setup]:
    """A gateway with access control, the echo API, one model, a budget and a limit; alice's key."""
    data = tmp_path_factory.mktemp("console")
    config = GatewayConfig.model_validate(
        {
            "data_dir": str(data),
            "admin_token": ADMIN_TOKEN,
            "auth": {"enabled": True, "key_rotation_grace_seconds": 1},
            "apis": [{"name": "echo", "spec": str(ECHO_SPEC), "base_url": upstream}],
            "models": [{"name": "gpt-test", "deployments": [
                {"provider": "openai", "model": "gpt-4o", "base_url": fake.url + "/v1", "api_key": "secret:openai-key",
                 "price": {"input": 2.5, "output": 10, "cache_read": 1.25}}]}],
            "models_from_env": False,
            "metering": {"flush_seconds": 0.1},
            "budgets": {"rules": [{"name": "team-month", "scope": "team", "usd": "5"}]},
            # A daily window: the calls made at the start are still counted when the page is read.
            "limits": {"rules": [{"name": "alice-daily", "scope": "consumer", "requests_per_day": 100000}]},
        }
    )  # fmt: skip
    gateway = Gateway(config)
    gateway.vault.put("openai-key", OPENAI_KEY)
    store = gateway.identities
    store.add_consumer("alice", "payments", "acme")
    _, key = keys.issue(store, "alice", description="alice's laptop")
    store.add_policy("consumer", "alice", "allow", Selector(), None)
    with serve_in_thread(gateway.http_app(), lifespan="on") as url:
        yield Setup(url, gateway, key, fake)


@pytest.fixture(scope="module")
def calls_made(setup: Setup) -> Setup:
    """Real calls, as alice: tool calls over /mcp and model calls over /v1, in the ledger."""
    import anyio

    async def tools() -> None:
        async with _mcp_client(setup.base + "/mcp", setup.alice_key) as client:
            for n in range(TOOL_CALLS):
                result = await client.call_tool("getItem", {"id": str(n)})
                assert not result.is_error, result

    anyio.run(tools)
    for n in range(MODEL_CALLS):
        reply = _chat(setup.base, setup.alice_key, f"hello {n}")
        assert reply.status_code == 200, reply.text
    deadline = time.monotonic() + 10
    while setup.gateway.ledger_store.count() < TOOL_CALLS + MODEL_CALLS:
        assert time.monotonic() < deadline, "the calls never reached the ledger"
        time.sleep(0.05)
    return setup


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """Headless Chromium from Debian's packages (scripts/test installs them)."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed: run scripts/test (its setup_chromium installs "
                    "the Debian packages chromium and chromium-driver)")  # fmt: skip
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                     "--disable-gpu", "--no-first-run"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def shots() -> Path:
    folder = Path(os.environ.get("MCP_GATEWAY_CONSOLE_SCREENSHOTS") or "/tmp/mcp-gateway-console-shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def visit(driver: webdriver.Chrome, url: str, shot: str | None = None) -> str:
    """Open `url`; no console errors, no secret on the page; a full-page screenshot as `shot`."""
    driver.get(url)
    return checked(driver, shot)


def checked(driver: webdriver.Chrome, shot: str | None = None, status: int | None = None) -> str:
    """The current page's source, after checking it holds no secret and the console logged no error
    (but the page's own `status`, when it is an error status the test expects)."""
    source = driver.page_source
    expected = f"{driver.current_url} - Failed to load resource: the server responded with a status of {status} "
    errors = [
        entry["message"] for entry in driver.get_log("browser")
        if entry["level"] in ("SEVERE", "ERROR") and not entry["message"].startswith(expected)
    ]  # fmt: skip
    assert not errors, "\n".join(errors)
    for secret in (ADMIN_TOKEN, OPENAI_KEY):
        assert secret not in source and secret not in driver.current_url
    if shot is not None:
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, max(800, min(int(height) + 40, 4000)))
        driver.save_screenshot(str(shots() / f"{shot}.png"))
        driver.set_window_size(1280, 1000)
    return source


def log_in(driver: webdriver.Chrome, base: str, token: str = ADMIN_TOKEN) -> None:
    driver.get(base + "/ui/login")
    box = driver.find_element(By.NAME, "token")
    box.clear()
    box.send_keys(token)
    box.submit()
    WebDriverWait(driver, 10).until(gone(box))


def gone(element: WebElement) -> Callable[[webdriver.Chrome], bool]:
    """A wait condition: `element`'s page was replaced by the next one."""

    def check(_: webdriver.Chrome) -> bool:
        try:
            element.is_enabled()
        except WebDriverException:  # stale, or (mid-navigation) no longer in any document
            return True
        return False

    return check


def navigate(driver: webdriver.Chrome, element: WebElement, alert: bool = False) -> None:
    """Click `element` (accepting the confirmation it asks for) and wait for the next page."""
    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    if alert:
        try:
            WebDriverWait(driver, 5).until(alert_is_present()).accept()
        except TimeoutException:
            pytest.fail("it asks for confirmation first")
    WebDriverWait(driver, 10).until(gone(page))


def logged_in(driver: webdriver.Chrome, base: str) -> None:
    """Log in unless this browser has a session already (each test can run on its own)."""
    driver.get(base + "/ui/")
    if driver.current_url.endswith("/ui/login"):
        log_in(driver, base)


def text_of(driver: webdriver.Chrome, selector: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, selector).text


def cookie_jar(driver: webdriver.Chrome) -> dict[str, str]:
    return {c["name"]: c["value"] for c in driver.get_cookies()}


def csrf_of(source: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', source)
    assert found is not None
    return found.group(1)


# -- the tests, in order: the module's browser keeps its session from one to the next --------------


def test_a_wrong_admin_token_is_refused(setup: Setup, browser: webdriver.Chrome) -> None:
    browser.delete_all_cookies()
    browser.get(setup.base + "/ui/")
    assert browser.current_url == setup.base + "/ui/login"  # no session: the login page
    log_in(browser, setup.base, "not-the-admin-token")
    assert "That is not the admin token." in checked(browser, "login", status=401)
    assert browser.current_url == setup.base + "/ui/login" and "mcpgw_console" not in cookie_jar(browser)
    # A forged or tampered cookie is no session either.
    forged = httpx2.get(setup.base + "/ui/consumers", cookies={"mcpgw_console": "v1.abc.9999999999.forged"})
    assert forged.status_code == 303 and forged.headers["location"] == "/ui/login"


def test_login_gives_an_httponly_strict_session_cookie(setup: Setup, browser: webdriver.Chrome) -> None:
    log_in(browser, setup.base)
    assert browser.current_url == setup.base + "/ui/"
    checked(browser)
    (cookie,) = browser.get_cookies()
    assert cookie["name"] == "mcpgw_console" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/ui" and not cookie["secure"]  # plain HTTP here: Secure only over HTTPS
    assert ADMIN_TOKEN not in cookie["value"]
    # Over HTTPS (as a TLS-terminating proxy reports it) the cookie is Secure too.
    https = httpx2.post(setup.base + "/ui/login", data={"token": ADMIN_TOKEN}, headers={"X-Forwarded-Proto": "https"})
    assert https.status_code == 303
    flags = https.headers["set-cookie"].lower()
    assert "httponly" in flags and "samesite=strict" in flags and "path=/ui" in flags and "secure" in flags


def test_each_page_shows_the_calls_made(calls_made: Setup, browser: webdriver.Chrome) -> None:
    base = calls_made.base
    total = TOOL_CALLS + MODEL_CALLS
    logged_in(browser, base)
    visit(browser, base + "/ui/", "overview")
    assert text_of(browser, "#total-calls") == str(total)
    assert int(text_of(browser, "#total-input")) == MODEL_CALLS * 11  # the fake reports 11 prompt tokens
    assert text_of(browser, "#total-cost") != "$0"
    assert len(browser.find_elements(By.CSS_SELECTOR, "figure.chart svg")) == 4

    visit(browser, base + "/ui/usage?by=consumer&period=24h", "usage")
    row = text_of(browser, "#usage tbody tr")
    assert row.startswith(f"alice {total} 0 ")
    visit(browser, base + "/ui/usage?by=model&period=24h")
    assert f"gpt-test {MODEL_CALLS} 0 {MODEL_CALLS * 11}" in text_of(browser, "#usage tbody")
    visit(browser, base + "/ui/usage?by=tool&period=24h")
    assert f"getItem {TOOL_CALLS} 0" in text_of(browser, "#usage tbody")
    # The CSV export, with the browser's session.
    exported = httpx2.get(base + "/ui/usage.csv?by=team&period=7d", cookies=cookie_jar(browser))
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["group"], r["calls"]) for r in rows] == [("payments", str(total))]

    visit(browser, base + "/ui/calls", "calls")
    listed = browser.find_elements(By.CSS_SELECTOR, "#calls tbody tr")
    assert len(listed) == total
    assert "gpt-test" in listed[0].text and "echo / getItem" in listed[-1].text
    navigate(browser, listed[0].find_element(By.CSS_SELECTOR, "a"))
    detail = checked(browser, "call")
    assert "gpt-4o" in text_of(browser, "#call") and "input 11, output 7" in text_of(browser, "#call")
    latest = calls_made.gateway.ledger_store.recent(1)[0]
    assert latest["trace_id"] is None or latest["trace_id"] in detail

    visit(browser, base + "/ui/apis", "apis")
    tools = len(calls_made.gateway.catalog.snapshot.apis["echo"].ingest.tools)
    assert f"echo Echo API {ECHO_SPEC} {tools}" in text_of(browser, "#apis tbody")
    visit(browser, base + "/ui/apis/echo", "api")
    browser.find_element(By.CSS_SELECTOR, "#tool-getItem summary").click()
    assert '"id"' in text_of(browser, "#tool-getItem pre")  # getItem's input schema

    visit(browser, base + "/ui/models", "models")
    deployment = text_of(browser, "#model-gpt-test tbody tr")
    assert "openai gpt-4o" in deployment and f" {MODEL_CALLS} 0 0 " in deployment and deployment.endswith("ok —")

    visit(browser, base + "/ui/consumers", "consumers")
    assert "payments acme active" in text_of(browser, "#consumer-alice")
    assert "alice's laptop" in text_of(browser, "#consumer-alice")
    assert calls_made.alice_key not in browser.page_source  # a key is never shown again
    visit(browser, base + "/ui/policies", "policies")
    assert "consumer alice allow" in text_of(browser, "#policies tbody")

    visit(browser, base + "/ui/limits", "limits")
    assert "alice-daily" in text_of(browser, "#limit-rules")
    usage = text_of(browser, "#limit-usage tbody tr")
    assert usage.startswith("alice-daily consumer alice 100000 requests per day"), usage
    balance = text_of(browser, "#balances tbody tr")
    assert balance.startswith("team-month team payments month") and "$5" in balance
    spent = calls_made.gateway.ledger_store.usage("team")[0].cost
    assert spent > 0 and f"${spent.normalize()}" in balance


def test_a_key_made_in_the_ui_works_until_revoked_in_the_ui(calls_made: Setup, browser: webdriver.Chrome) -> None:
    import anyio

    base = calls_made.base
    logged_in(browser, base)
    visit(browser, base + "/ui/consumers")
    form = browser.find_element(By.ID, "create-key")
    form.find_element(By.NAME, "description").send_keys("made in the console")
    navigate(browser, form.find_element(By.CSS_SELECTOR, "button"))
    checked(browser, "key-created")
    key = text_of(browser, "#new-key-value")
    assert key.startswith("mgw_")
    key_id = next(
        k.key_id for k in calls_made.gateway.identities.keys("alice") if k.description == "made in the console"
    )

    async def call_tool(secret: str) -> bool:
        async with _mcp_client(base + "/mcp", secret) as client:
            return not (await client.call_tool("getItem", {"id": "ui"})).is_error

    assert anyio.run(call_tool, key)
    assert _chat(base, key, "from the console's key").status_code == 200
    # Reloaded, the page no longer holds the key.
    assert key not in visit(browser, base + "/ui/consumers")

    navigate(browser, browser.find_element(By.CSS_SELECTOR, f"#key-{key_id} form.confirm button"), alert=True)
    assert "The key was revoked" in checked(browser)
    assert "revoked" in text_of(browser, f"#key-{key_id}")
    refused = httpx2.post(base + "/mcp", json={}, headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 401
    assert _chat(base, key, "after revocation").status_code == 401


def test_forms_without_the_csrf_token_change_nothing(setup: Setup, browser: webdriver.Chrome) -> None:
    base = setup.base
    logged_in(browser, base)
    source = visit(browser, base + "/ui/consumers")
    session = cookie_jar(browser)
    form = {"name": "mallory", "team": "x"}
    for sent in (form, {**form, "csrf": "not-the-token"}, {**form, "csrf": csrf_of(source) + "x"}):
        refused = httpx2.post(base + "/ui/consumers", data=sent, cookies=session)
        assert refused.status_code == 403 and "CSRF" in refused.text
    # Without a session, even the right token is refused.
    assert httpx2.post(base + "/ui/consumers", data={**form, "csrf": csrf_of(source)}).status_code == 403
    assert setup.gateway.identities.consumer("mallory") is None
    # The same form, with the token, is taken.
    taken = httpx2.post(base + "/ui/consumers", data={**form, "csrf": csrf_of(source)}, cookies=session)
    assert taken.status_code == 303 and setup.gateway.identities.consumer("mallory") is not None


def test_logging_out_ends_the_session_on_every_replica(setup: Setup, browser: webdriver.Chrome) -> None:
    """A second gateway on the same database (a replica) takes the session cookie; after logging
    out on the first, the replayed cookie is refused there at once and on the replica within its
    store polls."""
    replica = Gateway(setup.gateway.config)
    with serve_in_thread(replica.http_app(), lifespan="on") as other:
        logged_in(browser, setup.base)
        session = cookie_jar(browser)
        assert httpx2.get(other + "/ui/", cookies=session).status_code == 200
        navigate(browser, browser.find_element(By.CSS_SELECTOR, "form.logout button"))
        assert browser.current_url == setup.base + "/ui/login" and "mcpgw_console" not in cookie_jar(browser)
        # The old cookie, replayed, is no session any more.
        assert httpx2.get(setup.base + "/ui/", cookies=session).status_code == 303
        deadline = time.monotonic() + 15
        while httpx2.get(other + "/ui/", cookies=session).status_code != 303:
            assert time.monotonic() < deadline, "the replica still takes a logged-out session"
            time.sleep(0.2)


def test_apis_registered_from_a_url_and_a_file_then_removed(
    setup: Setup, browser: webdriver.Chrome, upstream: str
) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    base = setup.base
    spec = ECHO_SPEC.read_text()
    served = Starlette(routes=[Route("/echo.yaml", lambda request: PlainTextResponse(spec))])
    with serve_in_thread(served) as spec_host:
        logged_in(browser, base)
        for name, source in (("byurl", "url"), ("byfile", "file")):
            visit(browser, base + "/ui/apis")
            form = browser.find_element(By.ID, "register-api")
            form.find_element(By.NAME, "name").send_keys(name)
            if source == "url":
                form.find_element(By.NAME, "spec_url").send_keys(spec_host + "/echo.yaml")
            else:  # the page's script reads the picked file into the form
                form.find_element(By.CSS_SELECTOR, "input.spec-file").send_keys(str(ECHO_SPEC))
                WebDriverWait(browser, 5).until(lambda d: d.find_element(By.ID, "spec_content").get_property("value"))
            form.find_element(By.NAME, "base_url").send_keys(upstream)
            form.find_element(By.NAME, "prefix").send_keys(name)
            navigate(browser, form.find_element(By.CSS_SELECTOR, "button"))
            checked(browser, "api-registered" if source == "url" else None)
            assert browser.current_url == f"{base}/ui/apis/{name}?done=registered"
            tools = len(setup.gateway.catalog.snapshot.apis[name].ingest.tools)
            assert text_of(browser, "#tool-count").startswith(f"{tools} ")
            assert browser.find_elements(By.ID, f"tool-{name}_getItem")
    for name in ("byurl", "byfile"):
        visit(browser, base + "/ui/apis")
        navigate(
            browser, browser.find_element(By.CSS_SELECTOR, f'form[action="/ui/apis/{name}/remove"] button'), alert=True
        )
        assert "The API was removed." in checked(browser)
        assert name not in setup.gateway.catalog.snapshot.apis
    # A config-file API has no remove button, and a forged post is refused with the registry's reason.
    source = visit(browser, base + "/ui/apis")
    assert 'action="/ui/apis/echo/remove"' not in source
    refused = httpx2.post(base + "/ui/apis/echo/remove", data={"csrf": csrf_of(source)}, cookies=cookie_jar(browser))
    assert (
        refused.status_code == 409 and "config file" in refused.text and "echo" in setup.gateway.catalog.snapshot.apis
    )


def test_names_are_escaped(setup: Setup, browser: webdriver.Chrome) -> None:
    hostile = '<img src=x onerror="document.title=1">'
    setup.gateway.identities.add_consumer("<script>alert(1)</script>", hostile, "acme")
    logged_in(browser, setup.base)
    visit(browser, setup.base + "/ui/consumers")
    table = text_of(browser, "#consumers")
    assert "<script>alert(1)</script>" in table and hostile in table  # shown as text
    assert not browser.find_elements(By.CSS_SELECTOR, "#consumers script, #consumers img")
    assert browser.title == "Consumers & keys · mcp-gateway console"
