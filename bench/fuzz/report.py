"""The figures of a run: per category and overall, as collected, as JSON, and as printed."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path


def _category() -> dict:
    return {"cases": 0, "statuses": Counter(), "slowest_ms": 0.0, "max_memory_growth_mb": 0.0}


@dataclass
class Stats:
    """Figures for a run, overall and per category, collected case by case."""

    cases: int = 0
    statuses: Counter = field(default_factory=Counter)
    per_category: dict = field(default_factory=lambda: defaultdict(_category))
    failures: list = field(default_factory=list)
    failure_count: int = 0
    failure_kinds: Counter = field(default_factory=Counter)
    slowest_rejection: dict = field(default_factory=lambda: {"ms": 0.0})
    slowest_success: dict = field(default_factory=lambda: {"ms": 0.0})
    largest_case: dict = field(default_factory=lambda: {"growth_mb": 0.0})
    peak_rss_kb: int = 0
    total_ms: float = 0.0

    def record(self, case, status: int | str, ms: float, start_kb: int, peak_kb: int, failure: str | None) -> None:
        """Count one case: its status (or the exception it raised), time, memory and failure."""
        self.cases += 1
        self.total_ms += ms
        self.statuses[str(status)] += 1
        category = self.per_category[case.category]
        category["cases"] += 1
        category["statuses"][str(status)] += 1
        category["slowest_ms"] = max(category["slowest_ms"], round(ms, 3))
        growth = max(0, peak_kb - start_kb) / 1024
        category["max_memory_growth_mb"] = max(category["max_memory_growth_mb"], round(growth, 2))
        self.peak_rss_kb = max(self.peak_rss_kb, peak_kb)
        where = {"ms": round(ms, 3), "category": case.category, "label": case.label, "status": status}
        if isinstance(status, int) and 400 <= status < 500 and ms > self.slowest_rejection["ms"]:
            self.slowest_rejection = where
        if isinstance(status, int) and status < 300 and ms > self.slowest_success["ms"]:
            self.slowest_success = where
        if growth > self.largest_case["growth_mb"]:
            self.largest_case = {**where, "growth_mb": round(growth, 2)}
        if failure:
            self.failure_count += 1
            self.failure_kinds[f"{case.category}: {failure.splitlines()[0][:100]}"] += 1
            if len(self.failures) < 50:
                self.failures.append({"index": case.index, "category": case.category, "label": case.label,
                                      "status": status, "failure": failure[:2000]})


def build_report(stats: Stats, *, seed: int, model: str, memory: dict, setup_s: float, elapsed_s: float,
                 case_timeout_s: float) -> dict:
    """The run's figures as a JSON document (what ``--json`` writes and the tests read).

    Args:
        memory: baseline, final and peak figures of the process (``bench.fuzz.isolation``).
    """
    baseline_kb = memory["baseline_kb"]
    return {
        "seed": seed, "cases": stats.cases, "model": Path(model).name,
        "categories": {name: {"cases": c["cases"], "statuses": dict(sorted(c["statuses"].items())),
                              "slowest_ms": c["slowest_ms"], "max_memory_growth_mb": c["max_memory_growth_mb"]}
                       for name, c in sorted(stats.per_category.items())},
        "statuses": dict(sorted(stats.statuses.items())),
        "failures": stats.failures, "failure_count": stats.failure_count,
        "failure_kinds": dict(stats.failure_kinds.most_common()),
        "server_errors": sum(n for s, n in stats.statuses.items() if not s.isdigit() or int(s) >= 500),
        "slowest_rejection": stats.slowest_rejection, "slowest_success": stats.slowest_success,
        "mean_ms": round(stats.total_ms / max(1, stats.cases), 3),
        "memory": {
            "baseline_rss_mb": round(baseline_kb / 1024, 1),
            "peak_rss_mb": round(stats.peak_rss_kb / 1024, 1),
            "peak_growth_mb": round(max(0, stats.peak_rss_kb - baseline_kb) / 1024, 1),
            "largest_single_case": stats.largest_case,
            "final_rss_mb": round(memory["final_kb"] / 1024, 1),
            "vm_peak_mb": round(memory["vm_peak_kb"] / 1024, 1),
            "address_space_limit_mb": memory["limit_mb"],
            "per_case_peak": "reset" if memory["resettable"] else "ru_maxrss (not resettable here)",
        },
        "setup_s": round(setup_s, 2), "elapsed_s": round(elapsed_s, 2), "case_timeout_s": case_timeout_s,
    }


def format_report(report: dict) -> str:
    """The report as ``python -m bench.fuzz`` prints it: a table per category, then the totals."""
    statuses = sorted({s for c in report["categories"].values() for s in c["statuses"]},
                      key=lambda s: (not s.isdigit(), s))
    width = max(len(name) for name in report["categories"]) + 2
    lines = [f"fuzz: {report['cases']} cases, seed {report['seed']}, model {report['model']}, "
             f"{report['elapsed_s']} s (setup {report['setup_s']} s), mean {report['mean_ms']} ms per case", "",
             "category".ljust(width) + "cases" + "".join(s.rjust(7) for s in statuses) + "  slowest ms  max MB"]
    for name, c in report["categories"].items():
        lines.append(name.ljust(width) + str(c["cases"]).rjust(5)
                     + "".join(str(c["statuses"].get(s, "")).rjust(7) for s in statuses)
                     + f"{c['slowest_ms']:12.2f}{c['max_memory_growth_mb']:8.1f}")
    memory = report["memory"]
    slow, fast = report["slowest_rejection"], report["slowest_success"]
    largest = memory["largest_single_case"]
    lines += ["", "statuses: " + ", ".join(f"{s}: {n}" for s, n in report["statuses"].items()),
              f"failures: {report['failure_count']} (crashes, 5xx, other exceptions, unexpected statuses, wrong "
              f"answers); server errors: {report['server_errors']}",
              f"slowest rejection: {slow['ms']:.2f} ms ({slow.get('category')}: {slow.get('label')}, "
              f"{slow.get('status')})",
              f"slowest success: {fast['ms']:.2f} ms ({fast.get('category')}: {fast.get('label')})",
              f"peak memory: {memory['peak_rss_mb']} MB RSS (baseline {memory['baseline_rss_mb']} MB, growth "
              f"{memory['peak_growth_mb']} MB); largest single case +{largest['growth_mb']} MB "
              f"({largest.get('category')}: {largest.get('label')}); VmPeak {memory['vm_peak_mb']} MB under an "
              f"address-space limit of baseline + {memory['address_space_limit_mb']} MB"]
    for kind, count in report["failure_kinds"].items():
        example = next((f for f in report["failures"] if kind.startswith(f["category"] + ": ")
                        and kind.endswith(f["failure"].splitlines()[0][:100])), None)
        lines.append(f"  FAIL x{count} {kind}"
                     + (f"  (e.g. #{example['index']}: {example['label']})" if example else ""))
    return "\n".join(lines)
