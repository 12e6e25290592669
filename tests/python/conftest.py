"""Start the real `switchyard demo` binary on a free port for the Python SDK tests."""

import json
import os
import pathlib
import subprocess
import threading

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


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    """The demo on a free port with its own store (a SQLite file in a temporary directory):
    a dict with `url`, `log` (the lines it wrote so far) and `store_url`."""
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
    proc = subprocess.Popen(
        [_binary(), "demo", "--listen", "127.0.0.1:0", "--log-format", "json"],
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
def gateway_url(gateway):
    return gateway["url"]


@pytest.fixture(scope="session")
def client(gateway_url):
    """The official OpenAI SDK pointed at the demo (no retries: every answer is the gateway's)."""
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="unused-by-the-demo", max_retries=0)
