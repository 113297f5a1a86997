"""Manage a real, local Azurite blob service (pinned npm package) for development and tests.

Azurite is installed on demand into ``<repo>/.tools/azurite`` and started as a child process in
its own session (devhost.processes: stopped with SIGTERM then SIGKILL, and sent SIGTERM if this
process dies), listening on 127.0.0.1 only, with telemetry disabled (Azurite 3.35 collects
telemetry unless ``--disableTelemetry`` is given).

The account is Azurite's well-known development account ``devstoreaccount1``; its key is
public and documented by Microsoft, it is not a secret. Connection strings are still never logged.
"""
from __future__ import annotations

import argparse
import fcntl
import logging
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Optional

from .processes import free_port, start_child, stop_child

AZURITE_VERSION = "3.35.0"
ACCOUNT_NAME = "devstoreaccount1"
# Public, documented Azurite development key (https://learn.microsoft.com/azure/storage/common/storage-use-azurite).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEFAULT_ROOT = Path(__file__).resolve().parent.parent

log = logging.getLogger(__name__)
_PROBE_LOG = logging.getLogger(f"{__name__}.probe")
_PROBE_LOG.setLevel(logging.WARNING)


def _tail(text: str | bytes, limit: int = 2000) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text[-limit:].strip()


def ensure_installed(root: Path | str | None = None) -> Path:
    """Install ``azurite@AZURITE_VERSION`` under ``root/.tools/azurite`` if needed.

    Returns the path of the ``azurite-blob`` executable. Raises ``RuntimeError`` when npm is
    missing or the installation fails. Concurrent callers are serialised with a file lock.
    """
    prefix = Path(root or DEFAULT_ROOT) / ".tools" / "azurite"
    exe = prefix / "node_modules" / ".bin" / "azurite-blob"
    if exe.exists():
        return exe
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm was not found on PATH; install Node.js and npm to use Azurite")
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if exe.exists():  # another process finished the install while we waited
            return exe
        cmd = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix),
               f"azurite@{AZURITE_VERSION}"]
        log.info("installing azurite@%s into %s", AZURITE_VERSION, prefix)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"npm install azurite@{AZURITE_VERSION} timed out: "
                               f"{_tail(exc.stderr or '')}") from exc
        if proc.returncode != 0 or not exe.exists():
            raise RuntimeError(f"npm install azurite@{AZURITE_VERSION} failed "
                               f"(exit {proc.returncode}): {_tail(proc.stderr)}")
    return exe


def connection_string_for(host: str, port: int) -> str:
    """Connection string of the well-known Azurite account served at ``host:port``."""
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://{host}:{port}/{ACCOUNT_NAME};")


class Azurite:
    """A real Azurite blob service running as a child process.

    ``port=0`` picks a free port when first started; ``location=None`` uses a fresh temporary
    folder that is removed by :meth:`stop`. :meth:`restart` keeps both the port and the data.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 location: Path | str | None = None, root: Path | str | None = None,
                 startup_timeout: float = 30.0, stop_timeout: float = 5.0) -> None:
        self.host = host
        self._port = port
        self._location = Path(location) if location is not None else None
        self._owns_location = location is None
        self._root = root
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._proc: Optional[subprocess.Popen] = None
        self._log: Optional[IO[bytes]] = None

    # -- properties -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The blob port (0 until the first start when a free port was requested)."""
        return self._port

    @property
    def location(self) -> Optional[Path]:
        return self._location

    @property
    def blob_endpoint(self) -> str:
        return f"http://{self.host}:{self._port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return connection_string_for(self.host, self._port)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> "Azurite":
        """Start Azurite and wait until it answers a real blob request."""
        if self.running:
            return self
        exe = ensure_installed(self._root)
        if self._location is None:
            self._location = Path(tempfile.mkdtemp(prefix="azurite-"))
        self._location.mkdir(parents=True, exist_ok=True)
        if self._port == 0:
            self._port = free_port(self.host)
        cmd = [str(exe), "--blobHost", self.host, "--blobPort", str(self._port),
               "--location", str(self._location), "--skipApiVersionCheck", "--silent",
               "--loose", "--disableTelemetry"]
        self._log = tempfile.TemporaryFile()
        self._proc = start_child(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("Azurite blob service ready at %s", self.blob_endpoint)
        return self

    def _wait_ready(self) -> None:
        from azure.storage.blob import BlobServiceClient

        client = BlobServiceClient(self.blob_endpoint,
                                   credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY},
                                   retry_total=0, connection_timeout=1, read_timeout=3,
                                   logger=_PROBE_LOG)  # keep readiness polling out of INFO logs
        deadline = time.monotonic() + self._startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"Azurite exited with code {self._proc.returncode}: "
                                   f"{self.log_tail()}")
            try:
                client.get_service_properties()
                return
            except Exception as exc:  # not listening yet
                last_error = exc
            time.sleep(0.2)
        raise RuntimeError(f"Azurite did not answer within {self._startup_timeout:.0f}s "
                           f"({type(last_error).__name__}); log tail: {self.log_tail()}")

    def log_tail(self, limit: int = 2000) -> str:
        """The last characters of Azurite's console output of the current run."""
        if self._log is None or self._log.closed:
            return ""
        self._log.flush()
        self._log.seek(0)
        return _tail(self._log.read(), limit)

    def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        stop_child(proc, self._stop_timeout, name="Azurite")
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        """Stop Azurite (SIGTERM, then SIGKILL) and remove a temporary location. Idempotent."""
        self._stop_process()
        if self._owns_location and self._location is not None:
            shutil.rmtree(self._location, ignore_errors=True)
            self._location = None

    def restart(self) -> "Azurite":
        """Stop and start again on the same port with the same data folder."""
        self._stop_process()
        return self.start()

    def __enter__(self) -> "Azurite":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m devhost.azurite``: run Azurite in the foreground until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m devhost.azurite", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=10000, help="blob port (0 = any free port)")
    parser.add_argument("--location", type=Path, default=None,
                        help="data folder (default: a temporary folder removed on exit)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    azurite = Azurite(host=args.host, port=args.port, location=args.location)
    try:
        azurite.start()
        print(f"Azurite blob endpoint: {azurite.blob_endpoint} (account {ACCOUNT_NAME}, "
              "well-known dev key); press Ctrl-C to stop", flush=True)
        while azurite.running:
            time.sleep(0.5)
        log.error("Azurite exited unexpectedly: %s", azurite.log_tail())
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        azurite.stop()


if __name__ == "__main__":
    raise SystemExit(main())
