"""``he-scoring``: the encrypted scoring service from a shell.

Commands (``he-scoring COMMAND --help`` for each)::

    he-scoring keys generate --secret-key me.key      # writes the secret key (mode 0400), prints the key id
    he-scoring keys upload --secret-key me.key        # PUT /api/keys/{id}, or --connection-string to blob storage
    he-scoring keys delete --secret-key me.key        # the tutorial's clean-up step
    he-scoring describe                               # GET /api/model
    he-scoring predict X.npy --secret-key me.key      # one prediction per line on stdout
    he-scoring export model.pkl model.json            # python -m scoring.export
    he-scoring serve                                  # make serve: Azurite and the app on 127.0.0.1:7071

The service is ``--endpoint`` (default ``$SCORING_ENDPOINT``, else ``make serve``'s
http://127.0.0.1:7071) with ``--function-key`` (default ``$SCORING_FUNCTION_KEY``; prefer
the variable, a command line is visible to other local users).

Inputs to ``predict``: a ``.npy`` array or a ``.csv`` of numbers, one record per row, or a
folder holding the MNIST test set's idx files (pixels / 255, as the tutorial scales them).
Images (PNG, JPEG) are not read: what turns a picture into the model's features (size,
colour, inversion, scaling) is the model's own preprocessing, so do it where the model was
trained and save the features as ``.npy``.

Errors are one line on stderr and exit status 1 (2 for a wrong command line); never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import requests

from .keys import SecretKeys, load_secret_key, save_secret_key
from .scoring_client import ScoringClient, ServiceError
from .transport import DEFAULT_TIMEOUT

PROG = "he-scoring"
LOCAL_ENDPOINT = "http://127.0.0.1:7071"
CHECKOUT = Path(__file__).resolve().parent.parent  # serve runs this checkout's demo.serve


class CliError(Exception):
    """A failure to report as one line, without a traceback."""


# -- commands ----------------------------------------------------------------------------


def keys_generate(args: argparse.Namespace) -> int:
    """Generate a key pair for the service's parameters; write the secret key; print the key id."""
    if args.endpoint:
        keys = _client(args).generate_keys()
    else:
        keys = SecretKeys.generate()
    path = save_secret_key(keys, args.secret_key)
    print(keys.key_id)
    _note(f"secret key written to {path} (mode 0400; keep it, it never leaves this machine); "
          f"public bundle {len(keys.public_bundle()):,} bytes")
    return 0


def keys_upload(args: argparse.Namespace) -> int:
    """Upload the public bundle through the service, or straight to blob storage; print the key id."""
    keys = load_secret_key(args.secret_key)
    if args.connection_string or args.setting:
        from keystore.blobs import upload_bundle

        key_id = upload_bundle(keys.public_bundle(), setting=args.setting, connection_string=args.connection_string,
                               container=args.container)
        _note(f"uploaded to blob storage as {args.container or 'the keys container'}/{key_id}")
    else:
        key_id = _client(args, keys).upload_keys()
        _note(f"uploaded through the service at {_endpoint(args)}")
    print(key_id)
    return 0


def keys_delete(args: argparse.Namespace) -> int:
    """Delete the public bundle, through the service or straight from blob storage."""
    keys = load_secret_key(args.secret_key)
    if args.connection_string or args.setting:
        from keystore.blobs import delete_bundle

        deleted = delete_bundle(keys.key_id, setting=args.setting, connection_string=args.connection_string,
                                container=args.container)
    else:
        deleted = _client(args, keys).delete_keys()
    _note(f"key bundle {keys.key_id} " + ("deleted" if deleted else "was not there"))
    return 0


def describe(args: argparse.Namespace) -> int:
    """Print what the served model takes and returns."""
    info = _client(args).describe_model()
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
        return 0
    enc = info.encryption
    batch = info.batch
    lines = [f"estimator   {info.estimator} ({info.kind})",
             f"features    {info.n_features}",
             f"outputs     {info.n_outputs}" + (f", classes {list(info.classes)}" if info.classes is not None else ""),
             f"proba       {info.proba or 'not offered'}",
             f"encryption  CKKS N={enc.parameters.poly_modulus_degree}, "
             f"{'+'.join(str(q.bit_length()) for q in enc.parameters.coeff_modulus)}-bit modulus, "
             f"{enc.layout.n_chunks} ciphertext(s) per record",
             "batches     " + (f"up to {batch.max_records} records per request" if batch else "not offered"),
             f"precision   scores carry noise within +-{enc.noise_bound:.2g} (model privacy)",
             f"model hash  {info.model_hash}"]
    print("\n".join(lines))
    return 0


def predict(args: argparse.Namespace) -> int:
    """Encrypt each record, score it, decrypt; print one prediction (or scores) per line."""
    X, labels = load_records(args.input)
    if args.labels:
        labels = load_array(args.labels).reshape(-1)
    X = X[:args.limit] if args.limit else X
    keys = load_secret_key(args.secret_key) if args.secret_key else None
    client = _client(args, keys)
    info = client.describe_model()
    if X.shape[1] != info.n_features:
        raise CliError(f"{args.input}: records have {X.shape[1]} features; the model takes {info.n_features}")
    started = time.perf_counter()
    try:
        scores = client.decision_function(X) if args.scores else None
        predictions = client.predict(X) if scores is None else None
    finally:
        if keys is None and client.transport.stores_keys:  # keys made for this run only: leave nothing behind
            client.delete_keys()
    _print_rows(predictions, scores)
    _note(f"{len(X)} record(s) scored encrypted in {(time.perf_counter() - started):.2f} s "
          f"(key {client.keys.key_id[:12]}...)")
    if labels is not None and predictions is not None:
        correct = int(np.sum(predictions == labels[:len(X)]))
        _note(f"accuracy {correct}/{len(X)} against {args.labels or 'the labels'}")
    return 0


def export(args: argparse.Namespace) -> int:
    """``python -m scoring.export``: every option is that command's."""
    from scoring.export import main as export_main

    return export_main(args.arguments)


def serve(args: argparse.Namespace) -> int:
    """Serve locally as make serve does: Azurite and the Functions app on 127.0.0.1 until Ctrl-C."""
    import subprocess

    env = {**os.environ, "SERVE_PORT": str(args.port), "AZURITE_PORT": str(args.azurite_port)}
    if args.model:
        env["SCORING_MODEL_PATH"] = str(Path(args.model).resolve())
    try:
        return subprocess.call([sys.executable, "-m", "demo.serve"], env=env, cwd=CHECKOUT)
    except KeyboardInterrupt:
        return 0


# -- helpers -----------------------------------------------------------------------------


def load_array(path: str | Path) -> np.ndarray:
    """A ``.npy`` array or a ``.csv`` of numbers.

    Raises:
        CliError: for another suffix, or a file that does not hold numbers.
    """
    path = Path(path)
    try:
        if path.suffix == ".npy":
            return np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
        if path.suffix == ".csv":
            return np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise CliError(f"{path}: not an array of numbers ({exc})") from exc
    raise CliError(f"{path}: give a .npy or .csv file (or a folder of MNIST idx files)")


def load_records(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Records (rows, features) and, for an MNIST folder, their labels."""
    path = Path(path)
    if path.is_dir():
        from .datasets import load_mnist_test

        return load_mnist_test(path)
    X = load_array(path)
    if X.ndim != 2:
        X = X.reshape(1, -1) if X.ndim == 1 else X.reshape(len(X), -1)
    return X, None


def _endpoint(args: argparse.Namespace) -> str:
    return args.endpoint or LOCAL_ENDPOINT


def _client(args: argparse.Namespace, keys: SecretKeys | None = None) -> ScoringClient:
    return ScoringClient(_endpoint(args), function_key=args.function_key, timeout=args.timeout, keys=keys)


def _print_rows(predictions: np.ndarray | None, scores: np.ndarray | None) -> None:
    if predictions is not None:
        print("\n".join(str(p) for p in predictions.tolist()))
    else:
        rows = scores.reshape(len(scores), -1)
        print("\n".join(",".join(f"{v:.9g}" for v in row) for row in rows))


def _note(message: str) -> None:
    print(message, file=sys.stderr)


# -- the command line --------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``he-scoring`` parser, every command with its own ``--help``."""
    parser = argparse.ArgumentParser(prog=PROG, description="The encrypted scoring service from a shell: "
                                     "keys, model description, encrypted predictions, export, local serving.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    service = _service_options()
    secret = argparse.ArgumentParser(add_help=False)
    secret.add_argument("--secret-key", required=True, metavar="FILE", help="the secret key file (from keys generate)")
    storage = argparse.ArgumentParser(add_help=False)
    storage.add_argument("--connection-string", metavar="CS",
                         help="go straight to your blob storage with this connection string, not through the service")
    storage.add_argument("--setting", metavar="NAME",
                         help="go straight to blob storage through the app settings the service itself reads "
                              "(e.g. SCORING_STORAGE, or its __serviceUri/__clientId identity form)")
    storage.add_argument("--container", help="with --connection-string (default: hekeys) or --setting "
                         "(default: $SCORING_KEYS_CONTAINER, required as the services require it)")

    keys = commands.add_parser("keys", help="generate, upload and delete keys",
                               description="Generate, upload and delete keys.")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")
    generate = key_commands.add_parser("generate", parents=[service], help=keys_generate.__doc__,
                                       description=keys_generate.__doc__ + " Without an endpoint, for the "
                                       "default parameters (the only ones served today).")
    generate.add_argument("--secret-key", required=True, metavar="FILE",
                          help="where to write the secret key (a new file, mode 0400; never overwritten)")
    generate.set_defaults(run=keys_generate)
    for name, run in (("upload", keys_upload), ("delete", keys_delete)):
        command = key_commands.add_parser(name, parents=[service, secret, storage], help=run.__doc__,
                                          description=run.__doc__)
        command.set_defaults(run=run)

    command = commands.add_parser("describe", parents=[service], help=describe.__doc__, description=describe.__doc__)
    command.add_argument("--json", action="store_true", help="print the service's description as JSON")
    command.set_defaults(run=describe)

    command = commands.add_parser("predict", parents=[service], help=predict.__doc__,
                                  description=predict.__doc__ + " Inputs: a .npy or .csv (one record per row), "
                                  "or a folder of MNIST idx files.")
    command.add_argument("input", help="records: .npy, .csv, or a folder of MNIST idx files")
    command.add_argument("--secret-key", metavar="FILE", help="keys to use (default: fresh keys, deleted afterwards)")
    command.add_argument("--scores", action="store_true", help="print the decrypted scores instead of predictions")
    command.add_argument("--labels", metavar="FILE", help="true labels (.npy or .csv) to report accuracy against")
    command.add_argument("--limit", type=int, metavar="N", help="score only the first N records")
    command.set_defaults(run=predict)

    # Options go to scoring.export untouched: "+" as prefix keeps this parser from reading them.
    command = commands.add_parser("export", help="export a fitted model to the JSON artifact the service loads "
                                  "(python -m scoring.export; export --help for its options)",
                                  add_help=False, prefix_chars="+")
    command.add_argument("arguments", nargs=argparse.REMAINDER)
    command.set_defaults(run=export)

    command = commands.add_parser("serve", help=serve.__doc__, description=serve.__doc__ + " Needs the project "
                                  "checkout (an editable install) and Node.js for Azurite.")
    command.add_argument("--model", metavar="PATH", help="a joblib pickle or artifact (default: train on digits)")
    command.add_argument("--port", type=int, default=7071, help="the app's port (default: 7071)")
    command.add_argument("--azurite-port", type=int, default=10000, help="Azurite's port (default: 10000)")
    command.set_defaults(run=serve)
    return parser


def _service_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--endpoint", default=os.environ.get("SCORING_ENDPOINT"), metavar="URL",
                         help=f"the service (default: $SCORING_ENDPOINT, else {LOCAL_ENDPOINT})")
    options.add_argument("--function-key", default=os.environ.get("SCORING_FUNCTION_KEY"), metavar="KEY",
                         help="the Azure Functions key (default: $SCORING_FUNCTION_KEY)")
    options.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                         help=f"seconds per HTTP request (default: {DEFAULT_TIMEOUT:g})")
    return options


def main(argv: list[str] | None = None) -> int:
    """Run one command; report failures as one line on stderr.

    Example:
        >>> main(["describe", "--endpoint", "http://127.0.0.1:7071"])   # doctest: +SKIP
    """
    args = build_parser().parse_args(argv)
    return _reported(lambda: args.run(args), getattr(args, "endpoint", None) or LOCAL_ENDPOINT)


def _reported(run: Callable[[], int], endpoint: str) -> int:
    from azure.core.exceptions import AzureError

    from scoring.errors import ScoringError

    try:
        return run()
    except KeyboardInterrupt:
        return 130
    except requests.ConnectionError:
        message = f"cannot reach the service at {endpoint} (is it running? see --endpoint)"
    except FileExistsError as exc:
        message = f"{exc.filename} exists; a secret key file is never overwritten"
    except (CliError, ServiceError, ScoringError, ValueError, OSError, requests.RequestException) as exc:
        message = str(exc)
    except AzureError as exc:
        message = f"blob storage: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
