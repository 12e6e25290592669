"""Start the real `switchyard demo` binary on a free port for the Python SDK tests."""

import json
import os
import pathlib
import subprocess
import threading

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


@pytest.fixture(scope="session")
def gateway_url():
    proc = subprocess.Popen(
        [_binary(), "demo", "--listen", "127.0.0.1:0", "--log-format", "json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "SWITCHYARD_POLICIES": str(ROOT / "policies")},
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
        raise RuntimeError("switchyard did not start:\n" + "".join(state["log"]))
    yield f"http://{state['addr']}"
    proc.terminate()
    proc.wait(10)
