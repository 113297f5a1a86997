"""``python -m bench.load``: several client processes score concurrently against the app.

Each client process (multiprocessing, ``spawn``: TenSEAL must not be forked) has its own
``ScoringClient`` and its own keys, and loops encrypt -> score -> decrypt over held-out rows for a
bounded time and count. Every decrypted score vector is checked against the plaintext model
(the exported artifact's ``decision_function``: within 1e-5, same argmax). It reports requests,
failures, requests per second and p50/p99 latency of the score call and of the whole round trip.

    python -m bench.load [--clients 1,4,16] [--seconds 15] [--workers N] [--url URL]

Without ``--url`` it starts Azurite and serves the app itself on 127.0.0.1, as separate
processes: one ``python -m devhost`` per run whose ``FUNCTIONS_WORKER_PROCESS_COUNT`` is
``--workers`` (default: one worker process per core). devhost dispatches the invocations over
its worker processes as the Functions host does (round-robin), and reports how many score
requests each worker process served. One run per client count (``--clients``); the clients
run on the same machine as the app and Azurite. Prints a table and writes bench/load.json.
All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SHARED_DIR", ROOT.parent / "shared"))
TOLERANCE = 1e-5
MAX_RATE_PER_PROCESS = 1000  # requests per second: bounds the count of a run by its duration
SERVER_START_TIMEOUT = 60.0
SERVER_STOP_TIMEOUT = 10.0


# -- workload ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    """The served model's artifact and where the rows to score come from (picklable)."""

    model_path: str
    rows: str  # "digits" (held-out scaled digits) or "mnist"
    mnist_dir: str | None = None

    @property
    def label(self) -> str:
        return ("digits model on held-out scaled digits" if self.rows == "digits"
                else "tutorial model on the MNIST test set")


def load_rows(workload: Workload) -> np.ndarray:
    from client.datasets import load_digits_scaled, load_mnist_test

    if workload.rows == "digits":
        return load_digits_scaled()[0][1500:]  # the digits model is fitted on the first 1500 rows
    return load_mnist_test(workload.mnist_dir)[0]


def prepare_workload(kind: str, directory: Path) -> Workload:
    """Export the model artifact the app will serve into ``directory``.

    ``kind``: ``digits``, ``mnist`` (the tutorial model and MNIST from ../shared) or ``auto``
    (MNIST when ../shared holds it, as ``python -m bench`` does).
    """
    from client.datasets import train_digits_model
    from scoring.estimators import from_estimator
    from scoring.loading import load_model
    from scoring.model import export_model

    pickle, mnist = SHARED / "models" / "sklearn_mnist_model.pkl", SHARED / "data" / "mnist"
    if kind == "auto":
        kind = "mnist" if pickle.exists() and mnist.exists() else "digits"
    if kind == "mnist":
        path = export_model(load_model(pickle), directory / "sklearn_mnist_model.model.json")
        return Workload(str(path), "mnist", str(mnist))
    return Workload(str(export_model(from_estimator(train_digits_model()), directory / "digits.model.json")), "digits")


def workload_for(url: str, model_path: str | None) -> Workload:
    """The workload of an already running app: ``model_path``, or the artifact under models/
    whose hash the app announces; rows by feature count (64: digits, 784: MNIST)."""
    import requests

    from scoring.model import read_artifact

    served = requests.get(f"{url.rstrip('/')}/api/model", timeout=30).json()
    candidates = [Path(model_path)] if model_path else sorted((ROOT / "models").glob("*.model.json"))
    for path in candidates:
        try:
            model = read_artifact(path)
        except Exception:  # noqa: BLE001, S112 - not an artifact: try the next
            continue
        if model.model_hash == served["model_hash"]:
            rows = "digits" if model.n_features == 64 else "mnist"
            return Workload(str(path), rows, str(SHARED / "data" / "mnist") if rows == "mnist" else None)
    raise SystemExit(f"no model artifact matches the served model {served['model_hash'][:12]}; "
                     "pass --model PATH (the exported .model.json the app serves)")


# -- the app as separate processes ----------------------------------------------------------
WORKER_STATS_PREFIX = "devhost worker stats: "


class ServerProcesses:
    """The app served by one ``python -m devhost`` on 127.0.0.1 with ``workers`` worker processes.

    ``python -m devhost --port 0`` (or ``launcher``, which must take devhost's arguments), with
    ``FUNCTIONS_WORKER_PROCESS_COUNT=workers`` added to the environment besides ``env``
    (connection setting, container, model path). The host runs in its own session (devhost.processes):
    it gets SIGTERM if this process dies, and is stopped with SIGTERM (it stops its workers),
    then SIGKILL. Its output (workers' included) goes to a temporary file, read with :meth:`output`.
    ``procs`` holds the one host process.
    """

    def __init__(self, env: dict[str, str], *, workers: int = 1, extra_args: tuple[str, ...] = (),
                 python: str = sys.executable, launcher: list[str] | None = None,
                 start_timeout: float = SERVER_START_TIMEOUT) -> None:
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1", "FUNCTIONS_WORKER_PROCESS_COUNT": str(workers)}
        self.workers = workers
        self.extra_args = extra_args
        self.python = python
        self.launcher = launcher
        self.start_timeout = start_timeout
        self.url: str | None = None
        self.procs: list[subprocess.Popen] = []
        self._log = None

    def _command(self) -> list[str]:
        args = ["--app-dir", str(ROOT), "--host", "127.0.0.1", "--port", "0", *self.extra_args]
        return [*(self.launcher or [self.python, "-m", "devhost"]), *args]

    def start(self) -> ServerProcesses:
        from devhost.processes import start_child

        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        try:
            self.procs.append(start_child(self._command(), cwd=ROOT, env=self.env, stdout=self._log,
                                          stderr=subprocess.STDOUT))
            self.url = self._wait_listening()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_listening(self) -> str:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            for line in self.output().splitlines():
                if line.startswith("devhost listening on "):
                    return line.split()[-1]
            if self.procs[0].poll() is not None:
                raise RuntimeError(f"devhost exited with code {self.procs[0].returncode}:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"devhost did not listen within {self.start_timeout:.0f}s:\n{self.output()[-3000:]}")

    def output(self, index: int | None = None) -> str:
        """What the host and its workers printed so far (stdout and stderr, the whole log)."""
        if self._log is None or self._log.closed:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def worker_pids(self) -> list[int]:
        """The worker processes' pids, from the host's start-up log."""
        return [int(line.split("(pid ")[1].split(",")[0]) for line in self.output().splitlines()
                if "worker process" in line and "(pid " in line]

    def worker_stats(self) -> list[dict]:
        """The host's per-worker figures (invocations by function...), logged when it stopped."""
        lines = [line for line in self.output().splitlines() if WORKER_STATS_PREFIX in line]
        return json.loads(lines[-1].split(WORKER_STATS_PREFIX, 1)[1]) if lines else []

    def stop(self) -> None:
        """SIGTERM the host (it stops its workers), SIGKILL if it hangs. Idempotent; logs stay readable."""
        from devhost.processes import stop_children

        stop_children(self.procs, SERVER_STOP_TIMEOUT, name="devhost")

    def close(self) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU time of a process (Linux /proc; 0.0 elsewhere), with its direct
    children's if ``children`` (devhost's worker processes; Azurite's node process under
    ``python -m devhost.azurite``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        if children:
            for task in Path(f"/proc/{pid}/task").iterdir():
                for child in (task / "children").read_text().split():
                    total += cpu_seconds(int(child))
        return total
    except (OSError, ValueError, IndexError):
        return 0.0


class AzuriteProcess:
    """Azurite through ``python -m devhost.azurite`` in a child process of its own: that child
    gets SIGTERM when this process dies, even by SIGKILL, and then stops Azurite."""

    def __init__(self, python: str = sys.executable, start_timeout: float = SERVER_START_TIMEOUT) -> None:
        self.python = python
        self.start_timeout = start_timeout
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def connection_string(self) -> str:
        from devhost.azurite import connection_string_for

        return connection_string_for("127.0.0.1", self.port)

    def start(self) -> AzuriteProcess:
        from devhost.azurite import ensure_installed
        from devhost.processes import free_port, start_child

        ensure_installed(ROOT)
        self.port = free_port("127.0.0.1")
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self.proc = start_child(
            [self.python, "-m", "devhost.azurite", "--host", "127.0.0.1", "--port", str(self.port)], cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout
        try:
            while "Azurite blob endpoint:" not in self.output():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Azurite did not start:\n{self.output()[-3000:]}")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def output(self) -> str:
        if self._log is None or self._log.closed:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def stop(self) -> None:
        """SIGTERM (the child stops Azurite and removes its data), SIGKILL if it hangs."""
        from devhost.processes import stop_child

        stop_child(self.proc, timeout=20, name="devhost.azurite")
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- one client process ----------------------------------------------------------------------
def _describe_failure(exc: BaseException) -> str:
    from client import ServiceError

    if isinstance(exc, ServiceError):
        return f"{exc.status} {exc.code}"
    return f"{type(exc).__name__}: {str(exc)[:160]}"


def client_process(index: int, url: str, workload: Workload, seconds: float, max_requests: int,
                   binary: bool, barrier, results) -> None:
    """One client: setup (keys, upload, one verified warm-up), wait for all, then the timed loop.

    Puts one dict on ``results``: counts, latencies in ms, the first failures, wall clock start
    and end of the loop. Never raises: a setup failure is reported in ``setup_error``.
    """
    out: dict = {"index": index, "pid": os.getpid(), "requests": 0, "verified": 0, "failures": 0,
                 "errors": [], "score_ms": [], "round_trip_ms": [], "max_abs_error": 0.0,
                 "started": None, "ended": None, "cpu_seconds": 0.0, "key_uploads": 0, "setup_error": None}
    from devhost.processes import set_parent_death_signal

    set_parent_death_signal()  # the loop stops by itself anyway; this stops it at once if the parent dies
    client = None
    try:
        from client import ScoringClient
        from scoring.model import read_artifact

        model = read_artifact(workload.model_path)
        rows = load_rows(workload)
        rows = np.roll(rows, -(index * len(rows) // 7), axis=0)  # each process starts elsewhere
        plain = model.decision_function(rows)
        client = ScoringClient(url, retries=0, timeout=60, binary=binary)  # a 503 is a failure here
        info = client.describe_model()
        if info.model_hash != model.model_hash:
            raise RuntimeError(f"the app serves model {info.model_hash[:12]}, not {model.model_hash[:12]}")
        client.generate_keys()  # this process's own keys
        client.upload_keys()
        scores = client.decrypt(client.score(client.encrypt(rows[-1])))  # warm-up, not timed
        if not _matches(scores, plain[-1]):
            raise RuntimeError("the warm-up response does not decrypt to the plaintext scores")
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        out["setup_error"] = f"{_describe_failure(exc)}\n{traceback.format_exc(limit=4)}"
        barrier.abort()
        results.put(out)
        return
    try:
        barrier.wait(timeout=SERVER_START_TIMEOUT + 60)
    except Exception:  # noqa: BLE001 - broken: another process or the parent gave up
        out["setup_error"] = "the start barrier was broken (another process failed or the parent gave up)"
        results.put(out)
        return
    def count_uploads(response, *args, **kwargs):  # the client uploads again on keys_not_found
        if response.request.method == "PUT":
            out["key_uploads"] += 1

    client.session.hooks["response"].append(count_uploads)
    out["started"] = time.time()
    cpu = time.process_time()
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline and out["requests"] < max_requests:
        j = i % len(rows)
        i += 1
        out["requests"] += 1
        try:
            t0 = time.perf_counter()
            record = client.encrypt(rows[j])
            t1 = time.perf_counter()
            reply = client.score(record)
            t2 = time.perf_counter()
            scores = client.decrypt(reply)
            t3 = time.perf_counter()
        except Exception as exc:  # noqa: BLE001 - counted, the loop goes on
            out["failures"] += 1
            if len(out["errors"]) < 5:
                out["errors"].append(_describe_failure(exc))
            time.sleep(0.05)  # no hot loop against a server that is gone
            continue
        out["score_ms"].append((t2 - t1) * 1e3)
        out["round_trip_ms"].append((t3 - t0) * 1e3)
        out["max_abs_error"] = max(out["max_abs_error"], float(np.abs(scores - plain[j]).max()))
        if _matches(scores, plain[j]):
            out["verified"] += 1
        else:
            out["failures"] += 1
            if len(out["errors"]) < 5:
                out["errors"].append(f"row {j}: decrypted scores differ from the plaintext model")
    out["ended"] = time.time()
    out["cpu_seconds"] = time.process_time() - cpu
    try:
        client.delete_keys()
    except Exception:  # noqa: BLE001, S110 - clean-up only
        pass
    results.put(out)


def _matches(scores: np.ndarray, expected: np.ndarray) -> bool:
    expected = np.atleast_1d(expected)
    return (scores.shape == expected.shape and float(np.abs(scores - expected).max()) <= TOLERANCE
            and int(np.argmax(scores)) == int(np.argmax(expected)))


# -- the run -----------------------------------------------------------------------------------
def run_load(url: str, workload: Workload, *, processes: int = 4, seconds: float = 20.0,
             max_requests: int | None = None, binary: bool = True,
             setup_timeout: float = 120.0) -> dict:
    """Run ``processes`` client processes against ``url`` for ``seconds``; return the figures.

    Each process stops by itself after ``seconds`` or ``max_requests`` requests (default:
    ``MAX_RATE_PER_PROCESS * seconds``). Every process started here is joined, terminated or
    killed before this returns, also on error or Ctrl-C.
    """
    ctx = mp.get_context("spawn")
    max_requests = max_requests or int(MAX_RATE_PER_PROCESS * seconds) + 1
    barrier = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=client_process, name=f"load-client-{i}", daemon=True,
                         args=(i, url, workload, seconds, max_requests, binary, barrier, results))
             for i in range(processes)]
    outs: list[dict] = []
    started = time.monotonic()
    try:
        for proc in procs:
            proc.start()
        try:
            barrier.wait(timeout=setup_timeout)  # every client set up and warmed
        except threading.BrokenBarrierError:
            barrier.abort()
        deadline = time.monotonic() + seconds + 90  # a request in flight at the end has time to finish
        while len(outs) < processes and time.monotonic() < deadline:
            try:
                outs.append(results.get(timeout=1.0))
            except queue.Empty:
                if not any(p.is_alive() for p in procs) and results.empty():
                    break
        for proc in procs:
            proc.join(timeout=5)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        results.close()
        results.join_thread()
    return summarize(outs, processes, seconds, time.monotonic() - started)


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarize(outs: list[dict], processes: int, seconds: float, elapsed: float) -> dict:
    score = [v for o in outs for v in o["score_ms"]]
    round_trip = [v for o in outs for v in o["round_trip_ms"]]
    loops = [o for o in outs if o["started"] is not None]
    wall = (max(o["ended"] for o in loops) - min(o["started"] for o in loops)) if loops else 0.0
    requests = sum(o["requests"] for o in outs)
    verified = sum(o["verified"] for o in outs)
    return {
        "processes": processes, "seconds": seconds, "wall_seconds": wall,
        "run_seconds_including_setup": elapsed,
        "processes_reported": len(outs),
        "setup_errors": [o["setup_error"] for o in outs if o["setup_error"]],
        "requests": requests, "verified": verified,
        "failures": sum(o["failures"] for o in outs) + (processes - len(loops)),
        "requests_per_second": verified / wall if wall > 0 else 0.0,
        "score_p50_ms": _pct(score, 50), "score_p99_ms": _pct(score, 99),
        "round_trip_p50_ms": _pct(round_trip, 50), "round_trip_p99_ms": _pct(round_trip, 99),
        "max_abs_error": max((o["max_abs_error"] for o in outs), default=0.0),
        "key_uploads_during_run": sum(o["key_uploads"] for o in outs),
        "client_cpu_ms_per_request": 1e3 * sum(o["cpu_seconds"] for o in outs) / verified if verified else None,
        "per_process": [{k: o[k] for k in ("index", "pid", "requests", "verified", "failures", "errors")}
                        for o in sorted(outs, key=lambda o: o["index"])],
    }


# -- command line ------------------------------------------------------------------------------
def _warm_workers(url: str, workers: int) -> None:
    """Load the model in every worker process: devhost dispatches round-robin, as the host does."""
    import requests

    for _ in range(2 * workers):
        requests.get(f"{url}/api/model", timeout=60).raise_for_status()


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def print_table(runs: list[dict]) -> None:
    print(f"\n{'setup':<34} {'clients':>7} {'requests':>8} {'failed':>6} {'req/s':>7} "
          f"{'score p50':>9} {'p99':>7} {'round trip p50':>14} {'p99':>7}  (ms)")
    for run in runs:
        print(f"{run['setup']:<34} {run['processes']:>7} {run['requests']:>8} {run['failures']:>6} "
              f"{_fmt(run['requests_per_second']):>7} {_fmt(run['score_p50_ms']):>9} "
              f"{_fmt(run['score_p99_ms']):>7} {_fmt(run['round_trip_p50_ms']):>14} "
              f"{_fmt(run['round_trip_p99_ms']):>7}")
    print("\nCPU ms per verified request (clients share the machine's cores with the app and Azurite):")
    for run in runs:
        parts = [f"clients {_fmt(run['client_cpu_ms_per_request'])}"]
        if "server_cpu_ms_per_request" in run:
            parts += [f"app {_fmt(run['server_cpu_ms_per_request'])}",
                      f"Azurite {_fmt(run['azurite_cpu_ms_per_request'])}",
                      f"score requests per worker process {run['score_requests_per_worker_process']}"]
        print(f"  {run['setup']}: " + ", ".join(parts))


def load_table(*, clients: tuple[int, ...] = (1, 4, 16), seconds: float = 15.0, workers: int | None = None,
               workload_kind: str = "auto", binary: bool = True) -> list[dict]:
    """One run per client count against a fresh local host with ``workers`` worker processes.

    Each run's record holds requests/s, p50/p99 of the score call and of the round trip, the
    CPU per request of clients, app and Azurite, and the score requests each worker served.
    """
    workers = workers or os.cpu_count() or 1
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp, AzuriteProcess() as azurite:
        workload = prepare_workload(workload_kind, Path(tmp))
        for count in clients:
            env = {"SCORING_STORAGE": azurite.connection_string, "SCORING_KEYS_CONTAINER": "loadkeys",
                   "SCORING_MODEL_PATH": workload.model_path}
            with ServerProcesses(env, workers=workers) as server:
                _warm_workers(server.url, workers)
                host_pid = server.procs[0].pid  # the front; its workers are its children
                cpu_before = (cpu_seconds(host_pid, children=True), cpu_seconds(azurite.proc.pid, children=True))
                print(f"  load: {count} client process(es) for {seconds:g} s against devhost with {workers} "
                      f"worker process(es) ...", flush=True)
                run = run_load(server.url, workload, processes=count, seconds=seconds, binary=binary)
                server_cpu = cpu_seconds(host_pid, children=True) - cpu_before[0]
                azurite_cpu = cpu_seconds(azurite.proc.pid, children=True) - cpu_before[1]
                server.stop()  # the host logs its per-worker figures as it stops
                done = max(1, run["verified"])
                run["server_cpu_ms_per_request"] = 1e3 * server_cpu / done  # includes the clients' setup
                run["azurite_cpu_ms_per_request"] = 1e3 * azurite_cpu / done
                run["score_requests_per_worker_process"] = [
                    w["by_function"].get("score", 0) for w in server.worker_stats()]
            runs.append({"setup": f"{count} client(s), {workers} worker processes", "server_processes": workers,
                         "workload": workload.label, **run})
    return runs


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,4,16", help="client processes per run, comma-separated "
                        "(default 1,4,16)")
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of each run (default 15)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(),
                        help="without --url: devhost worker processes, FUNCTIONS_WORKER_PROCESS_COUNT "
                             "(default: one per core)")
    parser.add_argument("--url", help="a running app (127.0.0.1); default: start Azurite and the app")
    parser.add_argument("--model", help="with --url: the .model.json artifact the app serves")
    parser.add_argument("--workload", choices=("auto", "digits", "mnist"), default="auto",
                        help="without --url: the model and rows (auto: MNIST when ../shared has it)")
    parser.add_argument("--json-wire", action="store_true", help="send JSON instead of the binary form")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "load.json")
    args = parser.parse_args(argv)
    if args.url and not args.url.startswith(("http://127.0.0.1", "http://localhost")):
        parser.error("--url must be on 127.0.0.1")
    args.clients = tuple(int(c) for c in args.clients.split(","))
    if not all(1 <= c <= 64 for c in args.clients) or not 0 < args.seconds <= 600:
        parser.error("--clients must be 1..64 and --seconds 0..600")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)

    def _terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("interrupted; every process started here was stopped", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    binary = not args.json_wire
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    if args.url:
        workload = workload_for(args.url, args.model)
        print(f"workload: {workload.label}; {machine}; app at {args.url}")
        runs = [{"setup": f"{count} client(s), app at --url", **run_load(args.url, workload, processes=count,
                                                                        seconds=args.seconds, binary=binary)}
                for count in args.clients]
    else:
        print(f"{machine}")
        runs = load_table(clients=args.clients, seconds=args.seconds, workers=args.workers,
                          workload_kind=args.workload, binary=binary)
    print_table(runs)
    for run in runs:
        for error in run["setup_errors"] + [e for p in run["per_process"] for e in p["errors"]]:
            print(f"  {run['setup']}: {error.splitlines()[0]}")
    document = {"machine": machine, "wire": "binary" if binary else "json", "clients_on_same_machine": True,
                "runs": runs}
    args.output.write_text(json.dumps(document, indent=1))
    print(f"\nwrote {args.output}")
    return 0 if all(r["failures"] == 0 and not r["setup_errors"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
