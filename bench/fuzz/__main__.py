"""``python -m bench.fuzz``: run hostile cases against the core in a child process, print the figures.

Exit status: 0 if no case failed, 1 if some did (they are listed), 2 if the child crashed,
hung or ran out of memory (the case it was running is named).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from .cases import HUGE
from .isolation import SELFTESTS, FuzzFailure, run_isolated, worker
from .material import ROOT, digits_model
from .report import format_report

DEFAULT_JSON = ROOT / "bench" / "fuzz.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz",
                                     description="Hostile inputs against the scoring core, in a child process.")
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", help="a model artifact or pickle (default: the digits model)")
    parser.add_argument("--categories", help="comma-separated category prefixes (default: all)")
    parser.add_argument("--json", nargs="?", const=str(DEFAULT_JSON), default=None, metavar="PATH",
                        help=f"write the figures as JSON (default path {DEFAULT_JSON.relative_to(ROOT)})")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for the whole run")
    parser.add_argument("--case-timeout", type=float, default=10, help="seconds for one case")
    parser.add_argument("--mem-limit-mb", type=int, default=1024, help="address space over the baseline")
    parser.add_argument("--bomb-mb", type=int, default=HUGE >> 20, help="what the zstd bombs inflate to")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    parser.add_argument("--progress", help=argparse.SUPPRESS)
    parser.add_argument("--selftest", choices=SELFTESTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # trained here, not in the child: its heap is then a worker's, which only loads an artifact
            model = args.model or digits_model(Path(tmp))
            report = run_isolated(args.cases, seed=args.seed, model=model,
                                  categories=args.categories.split(",") if args.categories else None,
                                  timeout=args.timeout, case_timeout=args.case_timeout,
                                  mem_limit_mb=args.mem_limit_mb, bomb_mb=args.bomb_mb)
    except FuzzFailure as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 1 if report["failure_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
