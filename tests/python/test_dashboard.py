"""The dashboard (`GET /dashboard`) in a real browser: Debian's headless Chromium, driven over
WebDriver (selenium + chromium-driver), on a demo of its own while traffic runs.

- the model rows appear and the decisions counter advances within 3 s;
- a fault injected on one model's simulated upstream (500 on every call) shows its breaker
  open on the page, and an alert appears;
- the banner says the feed is disconnected when the gateway goes away;
- nothing is wider than the window at 1280 px, or on a phone;
- a gateway in `keys` mode refuses the feed until a key is pasted into the page's form (sent
  once for the session cookie, never kept); signed in with the admin key, the operator
  controls work: drain and undrain, force a breaker open (reached with Tab, pressed with
  Enter) and closed, and reset every breaker.

Screenshots go to target/ (CI keeps them): target/dashboard.png at 1280x900, the whole page at
1280 px, a phone-sized one and one with the fault. `SWITCHYARD_DASHBOARD_DOCS=SECONDS` lets the
charts gather that long and copies the whole page to docs/dashboard.png (the README's)."""

import base64
import json
import os
import pathlib
import shutil
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import ADMIN_KEY, DEMO_MODELS, ROOT, _run_demo

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SHOTS = ROOT / "target"
FAULTY = "gpt-4o-mini"
# Short drain on SIGTERM: the disconnect test stops its gateway while the page watches it.
OVERRIDE = "[server]\ndrain_ms = 500\n"


def _tool_missing():
    if CHROMIUM and CHROMEDRIVER:
        return None
    reason = "chromium and chromium-driver are needed (apt-get install chromium chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    return reason


def _driver():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both paths given: selenium never tries to download a browser or a driver.
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    _viewport(driver, 1280, 900)
    return driver


def _viewport(driver, width, height, mobile=False):
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )


def _screenshot(driver, name, full_page=False):
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / name
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": full_page}
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    print(f"screenshot: {path}")
    return path


def _wait(driver, what, predicate, timeout):
    """`predicate(driver)` truthy within `timeout` s, else fail with the page's state."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: predicate(d))
    except TimeoutException:
        feed = driver.find_element(By.ID, "feed").text
        logs = [e["message"] for e in driver.get_log("browser")][-10:]
        pytest.fail(f"{what} within {timeout} s: feed banner {feed!r}; browser log {logs}")


def _text(driver, element_id):
    return driver.find_element(By.ID, element_id).text


def _post(url, body=None, method="POST"):
    req = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


def _chat(url, model, key="unused-by-the-demo"):
    body = {"model": model, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}
    req = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        e.read()
        return e.code
    except OSError:
        return None


class Traffic:
    """Requests in background threads (over every demo chat model, and `models` when given)
    until stopped: bounded in count and time, so a hung test cannot leave load running."""

    def __init__(self, url, threads=2, limit=3000, seconds=240):
        self.url = url
        # Routes too, so the decisions show runner-ups and reasons.
        self.models = [*DEMO_MODELS, "auto", "cheap", "fast"]
        self.stop = threading.Event()
        self.sent = 0
        self.deadline = time.monotonic() + seconds
        self.limit = limit
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, offset):
        i = offset
        while not self.stop.is_set() and self.sent < self.limit and time.monotonic() < self.deadline:
            models = self.models
            status = _chat(self.url, models[i % len(models)])
            self.sent += 1
            if status != 200:
                time.sleep(0.05)  # a refused call returns at once: do not spin
            i += 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(20)


def _sim_url(log):
    """The demo's in-process simulator, from its `simulator started` log line."""
    for line in log:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        fields = event.get("fields", event)
        if "simulator started" in (event.get("message"), fields.get("message")):
            return f"http://{fields.get('sim') or event.get('sim')}"
    raise AssertionError("the demo did not log its simulator's address:\n" + "".join(log[:20]))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A demo of its own (the fault and the shutdown would disturb the shared one); `stop()`
    ends it early (SIGTERM), and teardown does nothing more then."""
    if reason := _tool_missing():
        pytest.skip(reason)
    override = tmp_path_factory.mktemp("dashboard") / "override.toml"
    override.write_text(OVERRIDE)
    runs = _run_demo(tmp_path_factory, None, ("--config", str(override)))
    state = next(runs)
    state["stop"] = lambda: next(runs, None)
    yield state
    next(runs, None)


@pytest.fixture(scope="module")
def browser(demo):
    driver = _driver()
    yield driver
    driver.quit()


def test_the_page_and_its_files_are_served_with_a_strict_policy(demo):
    with urllib.request.urlopen(f"{demo['url']}/dashboard", timeout=10) as r:
        assert r.status == 200
        assert r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "unsafe" not in csp
        etag = r.headers["etag"]
    req = urllib.request.Request(f"{demo['url']}/dashboard", headers={"if-none-match": etag})
    with pytest.raises(urllib.error.HTTPError) as not_modified:
        urllib.request.urlopen(req, timeout=10)
    assert not_modified.value.code == 304
    for name, kind in [("app.js", "text/javascript"), ("uplot.js", "text/javascript"), ("app.css", "text/css")]:
        with urllib.request.urlopen(f"{demo['url']}/dashboard/{name}", timeout=10) as r:
            assert r.headers["content-type"].startswith(kind), name
            assert r.headers["cache-control"] == "no-cache"
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{demo['url']}/dashboard/secrets.txt", timeout=10)
    assert missing.value.code == 404


def test_model_rows_appear_and_the_counters_advance(demo, browser):
    with Traffic(demo["url"]):
        browser.get(f"{demo['url']}/dashboard")
        _wait(browser, "the feed is live", lambda d: d.find_element(By.ID, "feed").get_attribute("data-state") == "live", 10)
        for model in DEMO_MODELS:
            _wait(browser, f"the row of {model}", lambda d, m=model: d.find_elements(By.CSS_SELECTOR, f'tr[data-model="{m}"]'), 5)
        # Wait for the first decision, then the counter must move on within 3 s.
        _wait(browser, "a routing decision", lambda d: d.find_elements(By.CSS_SELECTOR, "#decisions li"), 10)
        seen = _text(browser, "decisions-count")
        updated = _text(browser, "t-updated")
        _wait(browser, "the decisions counter advances", lambda d: _text(d, "decisions-count") != seen, 3)
        _wait(browser, "the snapshot time advances", lambda d: _text(d, "t-updated") != updated, 3)
        _wait(browser, "a request rate above zero", lambda d: _text(d, "t-rps") not in ("—", "0.00"), 3)
        # Let the charts gather a few seconds, then keep the picture.
        docs = int(os.environ.get("SWITCHYARD_DASHBOARD_DOCS") or 0)
        time.sleep(max(6, docs))
        _screenshot(browser, "dashboard.png")
        # At 1280 px nothing scrolls sideways.
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 1280, f"the page is {width} px wide in a 1280 px window"
        full = _screenshot(browser, "dashboard-full.png", full_page=True)
        if docs:
            (ROOT / "docs").mkdir(exist_ok=True)
            shutil.copyfile(full, ROOT / "docs" / "dashboard.png")
        _viewport(browser, 390, 844, mobile=True)
        time.sleep(1)
        # On a phone the page is one column: nothing wider than the screen but the tables,
        # which scroll inside their own box.
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width} px wide on a 390 px screen"
        _screenshot(browser, "dashboard-phone.png", full_page=True)
        _viewport(browser, 1280, 900)


def test_a_failing_model_shows_its_breaker_open_and_an_alert(demo, browser):
    sim = _sim_url(demo["log"])
    assert _post(f"{sim}/_sim/faults", {"model": FAULTY, "fault": "500", "rate": 1.0}) < 300
    try:
        with Traffic(demo["url"]) as traffic:
            traffic.models = [FAULTY]  # only the failing model: its breaker must open
            browser.get(f"{demo['url']}/dashboard")
            row = f'tr[data-model="{FAULTY}"] .breaker'
            _wait(browser, f"{FAULTY}'s breaker open", lambda d: d.find_element(By.CSS_SELECTOR, row).get_attribute("data-breaker") == "open", 15)
            alert = _wait(
                browser,
                f"an alert about {FAULTY}",
                lambda d: [li for li in d.find_elements(By.CSS_SELECTOR, "#alerts li") if FAULTY in li.text],
                10,
            )[0]
            assert alert.get_attribute("data-state") == "firing", alert.text
            assert not browser.find_element(By.ID, "alerts-empty").is_displayed()
            _screenshot(browser, "dashboard-fault.png")
    finally:
        _post(f"{sim}/_sim/faults", method="DELETE")


def test_the_banner_says_disconnected_when_the_gateway_goes_away(demo, browser):
    browser.get(f"{demo['url']}/dashboard")
    _wait(browser, "the feed is live", lambda d: d.find_element(By.ID, "feed").get_attribute("data-state") == "live", 10)
    demo["stop"]()
    banner = browser.find_element(By.ID, "feed")
    _wait(browser, "the disconnected banner", lambda d: banner.get_attribute("data-state") == "disconnected", 10)
    assert banner.get_attribute("role") == "status"
    assert "isconnected" in banner.text or "not reachable" in banner.text, banner.text
    # The banner offers a reconnect button, reachable by keyboard.
    assert browser.find_element(By.ID, "feed-retry").is_displayed()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    if reason := _tool_missing():
        pytest.skip(reason)
    for state in _run_demo(tmp_path_factory, {"SWITCHYARD_ADMIN_KEY": ADMIN_KEY}):
        yield state


def test_a_refused_feed_asks_for_a_key_and_keeps_it_nowhere(keyed):
    driver = _driver()
    try:
        driver.get(f"{keyed['url']}/dashboard")
        form = driver.find_element(By.ID, "signin")
        _wait(driver, "the sign-in form", lambda d: form.is_displayed(), 15)
        assert driver.find_element(By.ID, "feed").get_attribute("data-state") == "refused"
        key = driver.find_element(By.ID, "signin-key")
        assert driver.switch_to.active_element == key, "the form takes the focus"
        key.send_keys("not-the-key-at-all-000")
        driver.find_element(By.CSS_SELECTOR, "#signin-form button[type=submit]").click()
        _wait(driver, "the refusal", lambda d: _text(d, "signin-error"), 10)
        key.send_keys(ADMIN_KEY)
        driver.find_element(By.CSS_SELECTOR, "#signin-form button[type=submit]").click()
        _wait(driver, "the feed is live", lambda d: d.find_element(By.ID, "feed").get_attribute("data-state") == "live", 10)
        assert not form.is_displayed()
        assert key.get_attribute("value") == ""
        kept = driver.execute_script(
            "return [location.href, JSON.stringify(localStorage), JSON.stringify(sessionStorage), document.cookie]"
        )
        for place in kept:
            assert ADMIN_KEY not in place, kept
        _wait(driver, "the model rows", lambda d: d.find_elements(By.CSS_SELECTOR, "#models-body tr"), 5)
        # Signed in with the admin key, the operator controls show and work: drain a model and
        # the next snapshots mark it drained; undrain it again.
        drain = _wait(
            driver,
            "the drain control",
            lambda d: next(
                (b for b in d.find_elements(By.CSS_SELECTOR, "button[aria-label='Drain gpt-4o-mini']") if b.is_displayed()),
                None,
            ),
            10,
        )
        drain.click()
        _wait(driver, "the drained mark", lambda d: "drained" in _row_text(d, "gpt-4o-mini"), 10)
        assert "done" in _text(driver, "ops-result"), _text(driver, "ops-result")
        _wait(driver, "the control to turn into Undrain", lambda d: drain.text == "Undrain", 5)
        drain.click()
        _wait(driver, "the drain lifted", lambda d: "drained" not in _row_text(d, "gpt-4o-mini"), 10)
        # The keyboard alone: Tab to the force-open control, press Enter.
        force_open = "Force the breaker of gpt-4o-mini open"
        _tab_to(driver, force_open)
        ActionChains(driver).send_keys(Keys.ENTER).perform()
        _wait(driver, "the breaker forced open", lambda d: "forced open" in _row_text(d, "gpt-4o-mini"), 10)
        _wait(driver, "the breaker shown open", lambda d: _breaker(d, "gpt-4o-mini") == "open", 10)
        assert "done" in _text(driver, "ops-result"), _text(driver, "ops-result")
        # The next control in tab order forces it closed.
        ActionChains(driver).send_keys(Keys.TAB).perform()
        assert _focused_label(driver) == "Force the breaker of gpt-4o-mini closed", _focused_label(driver)
        ActionChains(driver).send_keys(Keys.ENTER).perform()
        _wait(driver, "the breaker forced closed", lambda d: "forced closed" in _row_text(d, "gpt-4o-mini"), 10)
        _wait(driver, "the breaker shown closed", lambda d: _breaker(d, "gpt-4o-mini") == "closed", 10)
        # Force another model open, then reset every breaker: no override is left.
        driver.find_element(By.CSS_SELECTOR, "button[aria-label='Force the breaker of gpt-4o open']").click()
        _wait(driver, "gpt-4o forced open", lambda d: "forced open" in _row_text(d, "gpt-4o"), 10)
        driver.find_element(By.ID, "reset-breakers").click()
        _wait(
            driver,
            "every override gone after the reset",
            lambda d: all("forced" not in _row_text(d, m) for m in ("gpt-4o", "gpt-4o-mini")),
            10,
        )
        assert _breaker(driver, "gpt-4o") == "closed"
        assert "Reset every breaker: done" in _text(driver, "ops-result"), _text(driver, "ops-result")
    finally:
        driver.quit()


def _focused_label(driver):
    return driver.execute_script(
        "const e = document.activeElement; return e ? e.getAttribute('aria-label') || e.textContent : null"
    )


def _tab_to(driver, label, presses=400):
    """Press Tab from the top of the page until the control labelled `label` has the focus."""
    driver.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
    for _ in range(presses):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        if _focused_label(driver) == label:
            return
    pytest.fail(f"Tab never reached {label!r}")


def _breaker(driver, model):
    cells = driver.find_elements(By.CSS_SELECTOR, f'tr[data-model="{model}"] .breaker')
    return cells[0].get_attribute("data-breaker") if cells else None


def _row_text(driver, model):
    for tr in driver.find_elements(By.CSS_SELECTOR, "#models-body tr"):
        if tr.get_attribute("data-model") == model:
            return tr.text
    return ""
