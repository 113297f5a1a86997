"""The core is pure: importing it (and the client) does not import Azure."""

from __future__ import annotations

import subprocess
import sys


def test_core_and_client_import_no_azure_functions():
    code = ("import sys, scoring.service, scoring.export, client; "
            "bad = sorted(m for m in sys.modules if m.startswith('azure.functions')); "
            "core_azure = sorted(m for m in sys.modules if m.startswith('azure')); "
            "print(bad); assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
