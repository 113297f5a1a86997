"""``make serve-aml``: the container's entry script under azmlinfsrv on 127.0.0.1:5001 in the foreground.

The model follows ``make serve``: ``SCORING_MODEL_PATH`` (exported to ``models/`` first), else
the digits model; the server finds it through ``AZUREML_MODEL_DIR=models/``, as in Azure ML.
With ``--azurite`` an Azurite is started for key bundles (``SCORING_STORAGE``); without it, key
bundles come inline, or from ``SCORING_STORAGE`` if that is set. Ctrl-C stops everything.

    python -m demo.serve_aml [--azurite] [--port 5001] [--model-dir DIR]

``azmlinfsrv`` has no host option and always binds 0.0.0.0; this runs its own entry point
(``azureml_inference_server_http.amlserver:run``, what the ``azmlinfsrv`` command calls) bound
to 127.0.0.1 instead. ``--model-dir`` serves a prepared folder as is (the tests use it).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .__main__ import MODELS, ROOT, prepare_model

LOOPBACK = "127.0.0.1"
ENTRY_SCRIPT = ROOT / "score.py"


def run_azmlinfsrv(model_dir: Path, *, port: int, host: str = LOOPBACK) -> None:
    """Run the Azure ML inference server with ``score.py`` until it stops (it exits the process).

    Raises:
        RuntimeError: if the installed azmlinfsrv no longer has the bind-host constant this patches.
    """
    from azureml_inference_server_http import amlserver

    if not hasattr(amlserver, "DEFAULT_HOST"):
        raise RuntimeError("azureml_inference_server_http.amlserver.DEFAULT_HOST is gone; cannot bind "
                           f"{host} only (check the pinned azureml-inference-server-http)")
    amlserver.DEFAULT_HOST = host
    os.environ.setdefault("AML_APP_ROOT", str(ROOT))
    os.environ.setdefault("GUNICORN_CMD_ARGS", "--no-control-socket")  # as in the image: no socket in $HOME
    sys.argv = ["azmlinfsrv", "--entry_script", str(ENTRY_SCRIPT), "--model_dir", str(model_dir),
                "--port", str(port)]
    amlserver.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.serve_aml", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("SERVE_PORT", "5001")))
    parser.add_argument("--model-dir", type=Path, help="serve this folder (default: prepare models/)")
    parser.add_argument("--azurite", action="store_true", help="start Azurite for stored key bundles")
    args = parser.parse_args(argv)

    model_dir = args.model_dir
    if model_dir is None:
        model_path, label = prepare_model()
        model_dir = MODELS
        os.environ["SCORING_MODEL_PATH"] = model_path.name  # relative: resolved against AZUREML_MODEL_DIR
        print(f"serving {label} from {model_path.relative_to(ROOT)}", flush=True)
    azurite = start_azurite() if args.azurite else None
    owner = os.getpid()
    print(f"scoring at http://{LOOPBACK}:{args.port}/score (GET: the model description); Ctrl-C stops",
          flush=True)
    try:
        run_azmlinfsrv(model_dir, port=args.port)
    finally:
        if azurite is not None and os.getpid() == owner:  # gunicorn's forked workers pass here too
            azurite.stop()
    return 0


def start_azurite():
    """Start Azurite for key bundles and point ``SCORING_STORAGE`` at it."""
    from devhost import Azurite, ensure_installed
    from devhost.processes import port_or_free

    ensure_installed(ROOT)
    azurite = Azurite(port=port_or_free(int(os.environ.get("AZURITE_PORT", "10000")))).start()
    os.environ["SCORING_STORAGE"] = azurite.connection_string
    os.environ.setdefault("SCORING_KEYS_CONTAINER", "hekeys")
    print(f"Azurite (key bundles, container {os.environ['SCORING_KEYS_CONTAINER']}) at "
          f"{azurite.blob_endpoint}", flush=True)
    return azurite


if __name__ == "__main__":
    sys.exit(main())
