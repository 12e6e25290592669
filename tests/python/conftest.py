"""Start the real `switchyard demo` binary on a free port for the Python SDK tests."""

import json
import os
import pathlib
import subprocess
import threading
import urllib.error
import urllib.request

import openai
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

DEMO_MODELS = [
    "gpt-4o-mini",
    "gpt-4o",
    "claude-3-5-haiku",
    "claude-sonnet-4-5",
    "gemini-2.0-flash",
    "gemini-2.5-flash",
    "llama3.2",
]


def _binary() -> str:
    env = os.environ.get("SWITCHYARD_BIN")
    if env:
        return env
    path = ROOT / "target" / "debug" / "switchyard"
    if not path.exists():
        raise RuntimeError(f"{path} not found: run `cargo build --workspace --bins` first")
    return str(path)


# Variables of the caller's environment that would change what the demo does.
_SCRUBBED_ENV = (
    "SWITCHYARD_ADMIN_KEY",
    "SWITCHYARD_STORE_URL",
    "SWITCHYARD_SIM_KEY",
    "SWITCHYARD_SIM_URL",
    "RUST_LOG",
)


def _run_demo(tmp_path_factory, extra_env=None, extra_args=()):
    """Start the demo on a free port with its own store (a SQLite file in a temporary
    directory), yield a dict with `url`, `log` (the lines it wrote so far) and `store_url`, then
    stop it with SIGTERM. `extra_env` is set over the scrubbed environment; `extra_args` go to
    `switchyard demo` (e.g. `--config overrides.toml`)."""
    store_dir = tmp_path_factory.mktemp("store")
    store_url = f"sqlite://{store_dir / 'demo.db'}"
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env.update(
        {
            "SWITCHYARD_POLICIES": str(ROOT / "policies"),
            "SWITCHYARD_STORE_URL": store_url,
            "RUST_LOG": "info",
        }
    )
    env.update(extra_env or {})
    proc = subprocess.Popen(
        [_binary(), "demo", "--listen", "127.0.0.1:0", "--log-format", "json", *extra_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    found = threading.Event()
    state = {"addr": None, "log": []}

    def pump():
        for line in proc.stderr:
            state["log"].append(line)
            if state["addr"] is None:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("message") == "switchyard listening":
                    state["addr"] = event["addr"]
                    found.set()

    threading.Thread(target=pump, daemon=True).start()
    if not found.wait(30):
        proc.kill()
        proc.wait(10)
        raise RuntimeError("switchyard did not start:\n" + "".join(state["log"]))
    yield {"url": f"http://{state['addr']}", "log": state["log"], "store_url": store_url}
    proc.terminate()  # SIGTERM: drains, flushes the request log
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    """The demo on a free port with its own store (a SQLite file in a temporary directory):
    a dict with `url`, `log` (the lines it wrote so far) and `store_url`."""
    yield from _run_demo(tmp_path_factory)


@pytest.fixture(scope="session")
def gateway_url(gateway):
    return gateway["url"]


@pytest.fixture(scope="session")
def client(gateway_url):
    """The official OpenAI SDK pointed at the demo (no retries: every answer is the gateway's)."""
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="unused-by-the-demo", max_retries=0)


# The admin key of the `keyed_gateway` demo (at least 16 characters).
ADMIN_KEY = "sdk-tests-admin-key-not-a-secret"


class Admin:
    """The admin API of a gateway in `keys` mode, through plain HTTP."""

    def __init__(self, url, admin_key):
        self.url = url
        self.admin_key = admin_key

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"authorization": f"Bearer {self.admin_key}", "content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                text = r.read().decode()
                return r.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read().decode() or "null")

    def create_key(self, name, **spec):
        """A new virtual key (`rpm`, `tpm`, `models`, `routes`, `budget_usd`, ...): the
        admin API's answer, with the secret under `key`."""
        status, body = self._call("POST", "/admin/keys", {"name": name, **spec})
        assert status == 201, (status, body)
        return body

    def revoke(self, key_id):
        status, body = self._call("DELETE", f"/admin/keys/{key_id}")
        assert status in (200, 204), (status, body)
        return body


@pytest.fixture(scope="session")
def keyed_gateway(tmp_path_factory):
    """A second demo in auth mode `keys` (an admin key is set): every model call needs a
    virtual key made through `/admin/keys`. The dict of `gateway`, plus `admin` (an `Admin`)."""
    for state in _run_demo(tmp_path_factory, {"SWITCHYARD_ADMIN_KEY": ADMIN_KEY}):
        state["admin"] = Admin(state["url"], ADMIN_KEY)
        yield state


@pytest.fixture(scope="session")
def anthropic_client(gateway_url):
    """The official Anthropic SDK pointed at the demo (its base URL is the gateway's root; no
    retries: every answer is the gateway's)."""
    import anthropic

    return anthropic.Anthropic(base_url=gateway_url, api_key="unused-by-the-demo", max_retries=0)
