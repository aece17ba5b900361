"""Drive a ScriptedUpstream running in another process through its control API,
and spawn one as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import httpx

from .script import Script

REPO_ROOT = Path(__file__).resolve().parents[2]


class RemoteUpstream:
    """Client for ``python -m tests.support.upstream`` (same verbs as ScriptedUpstream).

    ``RemoteUpstream.spawn()`` starts the process on a free port and waits for it;
    use it as a context manager to terminate it afterwards."""

    def __init__(self, url: str, process: Optional[subprocess.Popen] = None) -> None:
        self.url = url.rstrip("/")
        self.process = process
        self._http = httpx.Client(base_url=self.url, timeout=10)

    @property
    def openai_base(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base(self) -> str:
        return self.url

    @classmethod
    def spawn(cls, *args: str, port: int = 0, timeout: float = 15.0) -> "RemoteUpstream":
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.upstream", "--port", str(port), *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "scripted upstream listening on http://..."
        if "listening on" not in line:
            proc.kill()
            raise RuntimeError(f"upstream process failed to start: {line!r}")
        return cls(line.rsplit(" ", 1)[-1].strip(), proc)

    def enqueue(self, script: Optional[Script] = None, *, model: Optional[str] = None, **fields: Any) -> None:
        spec = (script or Script(**fields)).to_dict()
        payload: dict[str, Any] = {"script": spec}
        if model is not None:
            payload["model"] = model
        self._http.post("/_control/enqueue", json=payload).raise_for_status()

    def set_default(self, script: Optional[Script] = None, **fields: Any) -> None:
        self._http.post("/_control/default", json=(script or Script(**fields)).to_dict()).raise_for_status()

    def clear(self) -> None:
        self._http.post("/_control/clear").raise_for_status()

    def drop_idle_connections(self) -> int:
        return self._http.post("/_control/drop_idle").json()["dropped"]

    @property
    def requests(self) -> list[dict]:
        return self._http.get("/_control/requests").json()

    def stats(self) -> dict:
        return self._http.get("/_control/stats").json()

    def close(self) -> None:
        self._http.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> "RemoteUpstream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
