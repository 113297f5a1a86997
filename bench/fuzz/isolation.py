"""The child process the cases run in: a memory limit, deadlines, and the case it was running.

:func:`run_isolated` (or :func:`start_isolated`, collected later) spawns ``python -m
bench.fuzz --worker`` (a fresh interpreter: never a fork after SEAL has started threads). The child (:func:`worker`) loads the model, builds the
material, warms up, then sets ``RLIMIT_AS`` to its size plus ``mem_limit_mb`` and runs the
cases with a per-case deadline (``faulthandler`` ends it with a traceback), writing the case
it is running to a progress file before each one. The parent kills it on an overall
timeout. So a crash (a signal), a hang, a spin or a balloon is a :class:`FuzzFailure` naming
the case that caused it, not a dead test run.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .cases import HUGE, Case
from .fuzzer import Fuzzer
from .material import ROOT, build_material, default_record, digits_model
from .memory import PeakMemory, status_kb
from .report import build_report
from .runner import run

SELFTESTS = ("segv", "hang", "balloon")


class FuzzFailure(AssertionError):
    """The child crashed, hung or ran out of its limits; the message names the case."""


def limit_address_space(mem_limit_mb: int) -> None:
    """Allow this process its current size plus ``mem_limit_mb`` of address space."""
    limit = status_kb().get("VmSize", 0) * 1024 + (mem_limit_mb << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def selftest(args: argparse.Namespace) -> int:
    """A deliberate fault inside a case, so that tests can check the harness reports it."""
    progress_fd = os.open(args.progress, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.pwrite(progress_fd, json.dumps({"index": 0, "category": f"selftest.{args.selftest}",
                                       "label": "a deliberate fault"}).encode(), 0)
    limit_address_space(args.mem_limit_mb)
    faulthandler.dump_traceback_later(args.case_timeout, exit=True)
    if args.selftest == "segv":
        import ctypes

        ctypes.string_at(0)
    elif args.selftest == "hang":
        time.sleep(3600)
    else:
        return len([bytearray(64 << 20) for _ in range(4 * args.mem_limit_mb)])  # MemoryError under RLIMIT_AS
    return 0


def worker(args: argparse.Namespace) -> int:
    """The child: build the material, warm up, limit memory, run the cases, write the report."""
    importlib.import_module("numpy")  # before the baseline is measured

    if args.selftest:
        return selftest(args)

    from client.keys import SecretKeys
    from scoring.service import ScoringService
    from scoring.settings import Settings

    setup_started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model or str(digits_model(Path(tmp)))
        service = ScoringService(Settings(model_path=model_path))
        service.load()
    keys = SecretKeys.generate()
    material = build_material(service, keys, default_record(service, args.seed))
    fuzzer = Fuzzer(material, args.seed, bomb_bytes=args.bomb_mb << 20)
    fuzzer.prepare()
    categories = args.categories.split(",") if args.categories else None
    # warm up: one valid request and one rejection, outside the figures
    run(service, material, [fuzzer.case("request.valid", 0), fuzzer.case("request.random", 0)])
    setup_s = time.perf_counter() - setup_started
    baseline_kb = status_kb().get("VmRSS", 0)
    if args.mem_limit_mb:
        limit_address_space(args.mem_limit_mb)
    progress_fd = os.open(args.progress, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) if args.progress else None

    def progress(case: Case) -> None:
        line = json.dumps({"index": case.index, "category": case.category, "label": case.label})
        os.pwrite(progress_fd, line.encode().ljust(512)[:4096], 0)

    started = time.perf_counter()
    stats = run(service, material, fuzzer.cases(args.cases, categories),
                progress=progress if progress_fd is not None else None, case_timeout=args.case_timeout)
    elapsed = time.perf_counter() - started
    final = status_kb()
    memory = {"baseline_kb": baseline_kb, "final_kb": final.get("VmRSS", 0), "vm_peak_kb": final.get("VmPeak", 0),
              "limit_mb": args.mem_limit_mb, "resettable": PeakMemory().resettable}
    report = build_report(stats, seed=args.seed, model=model_path, memory=memory, setup_s=setup_s,
                          elapsed_s=elapsed, case_timeout_s=args.case_timeout)
    Path(args.report).write_text(json.dumps(report, indent=2))
    return 0


class IsolatedRun:
    """A run of cases in a child process, started and not yet collected (:func:`start_isolated`)."""

    def __init__(self, command: list[str], *, timeout: float, case_timeout: float, mem_limit_mb: int) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        folder = Path(self._tmp.name)
        self.report_path, self.progress_path = folder / "report.json", folder / "progress"
        self.timeout, self.case_timeout, self.mem_limit_mb = timeout, case_timeout, mem_limit_mb
        self.started = time.monotonic()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self._stderr = open(folder / "stderr", "w+")  # a file, not a pipe: nobody reads while it runs
        self._process = subprocess.Popen(
            command + ["--report", str(self.report_path), "--progress", str(self.progress_path)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self._stderr)

    def running(self) -> str:
        """The case the child is running (as it wrote before starting it)."""
        try:
            return self.progress_path.read_text().strip() or "(setup)"
        except OSError:
            return "(setup: no case started)"

    def result(self) -> dict:
        """Wait for the child (within what remains of the timeout) and return its report.

        Raises:
            FuzzFailure: if the child dies (a signal such as SIGSEGV), exceeds a deadline, or
                fails otherwise; the message names the case it was running.
        """
        try:
            remaining = max(0.0, self.timeout - (time.monotonic() - self.started))
            try:
                self._process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                running = self.running()
                self._process.kill()
                self._process.wait()
                raise FuzzFailure(f"the fuzz child did not finish within {self.timeout} s (a hang or a spin): it "
                                  f"was running {running}; stderr tail: {self.stderr()[-1500:]}") from None
            code, stderr = self._process.returncode, self.stderr()
            if code != 0:
                if code < 0:
                    what = f"was killed by {signal.Signals(-code).name}"
                elif "Timeout (" in stderr:
                    what = f"exceeded the per-case deadline of {self.case_timeout} s"
                elif "MemoryError" in stderr:
                    what = f"ran out of its address-space limit (baseline + {self.mem_limit_mb} MB)"
                else:
                    what = f"exited with {code}"
                raise FuzzFailure(f"the fuzz child {what} while running {self.running()}; stderr tail:\n"
                                  f"{stderr[-3000:]}")
            return json.loads(self.report_path.read_text())
        finally:
            self._stderr.close()
            self._tmp.cleanup()

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    def stop(self) -> None:
        """End the child if it still runs (a run nobody collects), and clean up."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._stderr.close()
        self._tmp.cleanup()


def start_isolated(cases: int = 3000, *, seed: int = 0, model: str | Path | None = None,
                   categories: list[str] | None = None, timeout: float = 600, case_timeout: float = 10,
                   mem_limit_mb: int = 1024, bomb_mb: int = HUGE >> 20, selftest: str | None = None) -> IsolatedRun:
    """Start running cases in a child process (spawned fresh: no fork after SEAL threads); the
    caller may do other work, then collect the report with :meth:`IsolatedRun.result`."""
    command = [sys.executable, "-X", "faulthandler", "-m", "bench.fuzz", "--worker", "--cases", str(cases),
               "--seed", str(seed), "--case-timeout", str(case_timeout), "--mem-limit-mb", str(mem_limit_mb),
               "--bomb-mb", str(bomb_mb)]
    if model:
        command += ["--model", str(model)]
    if categories:
        command += ["--categories", ",".join(categories)]
    if selftest:
        command += ["--selftest", selftest]
    return IsolatedRun(command, timeout=timeout, case_timeout=case_timeout, mem_limit_mb=mem_limit_mb)


def run_isolated(cases: int = 3000, **options) -> dict:
    """Run cases in a child process and return its report (``bench.fuzz.report.build_report``);
    the options are :func:`start_isolated`'s.

    Raises:
        FuzzFailure: if the child dies (a signal such as SIGSEGV), exceeds a deadline, or
            fails otherwise; the message names the case it was running.
    """
    return start_isolated(cases, **options).result()
