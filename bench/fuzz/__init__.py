"""Hostile inputs for the scoring service, built from valid ones, and runners that measure them.

``python -m bench.fuzz [--cases N] [--seed S] [--json PATH]`` runs N mutated requests, key
bundles, challenges and deletions against the core (``protocol.read_request``,
``ScoringService.score`` / ``check_upload`` / ``challenge``, ``ownership.verify``, which run
the strict parsers of ``scoring.protocol``, ``scoring.keys`` and ``scoring.ckks``) in a child
process, and prints the cases per category, the status histogram, the failures (crashes,
5xx, other exceptions, unexpected statuses, wrong answers: 0 expected), the slowest
rejection and the peak memory. ``tests/test_fuzz.py`` runs thousands in process and
hundreds over HTTP (:class:`~bench.fuzz.over_http.HttpTarget`) in every test run.

The package, by role:

* :mod:`~bench.fuzz.material`: the valid inputs, made with a real key (and crafted keys);
* :mod:`~bench.fuzz.blobs`: the SEAL blob layout, bombs, binary frames and bundles, as bytes;
* :mod:`~bench.fuzz.cases`: what a case is and which answers it allows;
* :mod:`~bench.fuzz.mutator` and :mod:`~bench.fuzz.families`: the mutations, by family
  (``request.*``, ``bundle.*``, ``score.*``, ``keys.*``, ``batch.*``);
* :mod:`~bench.fuzz.fuzzer`: the deterministic schedule of cases;
* :mod:`~bench.fuzz.runner`: cases against the core in process, and the verdict on any
  answer (checked against the plaintext model);
* :mod:`~bench.fuzz.over_http`: the same cases against a running app;
* :mod:`~bench.fuzz.isolation` and :mod:`~bench.fuzz.memory`: the child process with its
  memory limit and deadlines, and the peak memory per case;
* :mod:`~bench.fuzz.report`: the figures; ``python -m bench.fuzz``: the command line.
"""

from .blobs import bomb, ciphertext_fields, reencode, with_zero_parts
from .cases import Case, Stored, Target
from .fuzzer import Fuzzer
from .isolation import FuzzFailure, IsolatedRun, run_isolated, start_isolated
from .material import Material, build_material, default_record
from .memory import PeakMemory
from .report import format_report
from .runner import Answer, call, check_success, run, verdict

__all__ = ["Answer", "Case", "Fuzzer", "FuzzFailure", "IsolatedRun", "Material", "PeakMemory", "Stored", "Target",
           "bomb", "build_material", "call", "check_success", "ciphertext_fields", "default_record", "format_report",
           "reencode", "run", "run_isolated", "start_isolated", "verdict", "with_zero_parts"]
