"""Load: several client processes score at once against the app served by ``python -m devhost``
(its own process, on a free port of 127.0.0.1, with two worker processes) with Azurite, for a
bounded time. Every response must decrypt to the plaintext scores; none may fail; the host must
spread the work over both workers; no process may be left behind."""

from __future__ import annotations

import multiprocessing as mp
import time

from bench.load import ServerProcesses, Workload, run_load
from helpers import alive

CLIENTS = 3
SECONDS = 6.0


def server_env(azurite, model_path, container: str) -> dict[str, str]:
    return {"SCORING_STORAGE": azurite.connection_string, "SCORING_KEYS_CONTAINER": container,
            "SCORING_MODEL_PATH": str(model_path)}


def test_concurrent_client_processes_all_verified(azurite, digits_model_path):
    server = ServerProcesses(server_env(azurite, digits_model_path, "loadkeys"), workers=2)
    started = time.monotonic()
    try:
        server.start()
        workers = server.worker_pids()
        result = run_load(server.url, Workload(str(digits_model_path), "digits"), processes=CLIENTS,
                          seconds=SECONDS, setup_timeout=60)
    finally:
        server.stop()
    elapsed = time.monotonic() - started
    log = server.output()
    stats = server.worker_stats()
    server.close()

    assert not result["setup_errors"], result["setup_errors"]
    assert result["processes_reported"] == CLIENTS
    errors = [e for p in result["per_process"] for e in p["errors"]]
    assert result["failures"] == 0, errors
    assert result["verified"] == result["requests"] > 0  # every response decrypted and checked
    assert all(p["verified"] >= 5 for p in result["per_process"]), result["per_process"]
    assert result["max_abs_error"] <= 1e-5
    assert result["key_uploads_during_run"] == 0  # no keys_not_found answered behind the client's back
    assert SECONDS <= result["wall_seconds"] <= SECONDS + 5  # the loops stopped by themselves
    assert elapsed < 90
    # the server saw them: one access line per score request (warm-ups included), no traceback
    assert log.count("POST /api/score/") >= result["requests"]
    assert "Traceback" not in log
    # one host, two worker processes: the score requests were spread over both (round-robin)
    score = [w["by_function"].get("score", 0) for w in stats]
    assert [w["pid"] for w in stats] == workers and len(workers) == 2
    assert sum(score) >= result["requests"] and min(score) >= sum(score) // 3, score
    assert all(proc.returncode is not None for proc in server.procs)
    assert not any(alive(p["pid"]) for p in result["per_process"])
    assert not any(alive(proc.pid) for proc in server.procs)
    assert not any(alive(pid) for pid in workers)
    assert not mp.active_children()


def test_a_failed_run_leaves_no_process_behind(azurite, digits_model_path):
    """Clients that cannot reach the app report a setup error, stop, and are all reaped."""
    server = ServerProcesses(server_env(azurite, digits_model_path, "loadkeys"))
    try:
        server.start()
        url = server.url
        workers = server.worker_pids()
    finally:
        server.close()  # the app is gone before the clients start
    assert not any(alive(proc.pid) for proc in server.procs)
    assert workers and not any(alive(pid) for pid in workers)

    result = run_load(url, Workload(str(digits_model_path), "digits"), processes=2, seconds=2,
                      setup_timeout=60)
    assert len(result["setup_errors"]) == 2 and "ConnectionError" in result["setup_errors"][0]
    assert result["failures"] == 2 and result["verified"] == 0
    assert not any(alive(p["pid"]) for p in result["per_process"])
    assert not mp.active_children()
