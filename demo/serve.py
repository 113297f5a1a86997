"""``make serve``: Azurite and the Functions app on 127.0.0.1:7071 in the foreground.

Uses the model ``SCORING_MODEL_PATH`` names (exported to ``models/`` first), or trains the
digits model. Stops both on Ctrl-C or SIGTERM. With Azure Functions Core Tools installed,
``func start`` serves the same app (see the README).
"""

from __future__ import annotations

import os
import sys

from devhost.host import main as devhost_main

from .__main__ import ROOT, prepare_model


def main() -> int:
    model_path, label = prepare_model()
    print(f"serving {label} from {model_path.relative_to(ROOT)}", flush=True)
    os.environ["SCORING_MODEL_PATH"] = str(model_path)
    os.environ.setdefault("SCORING_KEYS_CONTAINER", "hekeys")
    os.environ.setdefault("SCORING_STORAGE", "UseDevelopmentStorage=true")  # --azurite points it at its Azurite
    return devhost_main(["--app-dir", str(ROOT), "--azurite",
                         "--port", os.environ.get("SERVE_PORT", "7071"),
                         "--azurite-port", os.environ.get("AZURITE_PORT", "10000")])


if __name__ == "__main__":
    sys.exit(main())
