"""The he-scoring command line: help everywhere, a real round trip, one-line errors."""

from __future__ import annotations

import importlib
import json
import re
import stat
import subprocess
import sys
import tomllib

import numpy as np
import pytest
from azure.storage.blob import BlobClient, BlobServiceClient

from client.cli import main
from conftest import ROOT, running_app

CONTAINER = "clikeys"
HELP = {  # every command, and options its help must name
    (): ["keys", "describe", "predict", "export", "serve"],
    ("keys",): ["generate", "upload", "delete"],
    ("keys", "generate"): ["--secret-key", "--endpoint", "--function-key"],
    ("keys", "upload"): ["--secret-key", "--endpoint", "--connection-string", "--setting", "--container"],
    ("keys", "delete"): ["--secret-key", "--endpoint", "--connection-string", "--setting", "--container"],
    ("describe",): ["--endpoint", "--function-key", "--json"],
    ("predict",): ["--endpoint", "--secret-key", "--scores", "--labels", "--limit", "input"],
    ("export",): ["source", "destination", "--input-bound", "--bounds-from", "--margin"],
    ("serve",): ["--model", "--port", "--azurite-port"],
}


@pytest.fixture(scope="module")
def app(azurite, digits_model_path):
    with running_app(azurite, digits_model_path, container=CONTAINER) as host:
        yield host


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``he-scoring argv`` in this process: status, stdout, stderr."""
    capsys.readouterr()
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def run_process(*argv: str) -> subprocess.CompletedProcess:
    """``python -m client argv`` as a user would run it."""
    return subprocess.run([sys.executable, "-m", "client", *argv], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, check=False)


def stored(azurite, key_id: str) -> bool:
    return BlobClient.from_connection_string(azurite.connection_string, CONTAINER, key_id).exists()


def stored_keys(azurite) -> set[str]:
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(CONTAINER)
    return {blob.name for blob in container.list_blobs()} if container.exists() else set()


def field(out: str, name: str) -> str:
    """The value on ``describe``'s line for ``name``."""
    return re.search(rf"^{name}\s+(.*)$", out, re.MULTILINE).group(1)


@pytest.mark.parametrize("command", list(HELP), ids=lambda c: " ".join(c) or "he-scoring")
def test_every_command_has_help_naming_its_options(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    for option in HELP[command]:
        assert option in out, f"{' '.join(command)} --help does not name {option}"


def test_runs_as_python_dash_m_and_is_declared_as_a_console_script():
    result = run_process("--help")
    assert result.returncode == 0 and "usage: he-scoring" in result.stdout
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["he-scoring"].partition(":")
    assert getattr(importlib.import_module(module), function) is main


def test_keys_predict_and_clean_up_against_the_served_app(app, azurite, digits, digits_estimator, tmp_path, capsys):
    X, y = digits
    rows, labels = X[1500:1530], y[1500:1530]
    endpoint = ("--endpoint", app.url)
    secret = str(tmp_path / "me.key")

    status, out, err = run(capsys, "keys", "generate", "--secret-key", secret, *endpoint)
    key_id = out.strip()
    assert status == 0 and len(key_id) == 64 and "mode 0400" in err
    assert stat.S_IMODE((tmp_path / "me.key").stat().st_mode) == 0o400

    status, out, _ = run(capsys, "keys", "upload", "--secret-key", secret, *endpoint)
    assert (status, out.strip()) == (0, key_id) and stored(azurite, key_id)

    status, out, _ = run(capsys, "describe", *endpoint)
    assert status == 0 and "LogisticRegression" in out and field(out, "features") == "64"
    status, out, _ = run(capsys, "describe", "--json", *endpoint)
    assert json.loads(out)["n_features"] == 64

    np.save(tmp_path / "rows.npy", rows)
    np.save(tmp_path / "labels.npy", labels)
    status, out, err = run(capsys, "predict", str(tmp_path / "rows.npy"), "--secret-key", secret,
                           "--labels", str(tmp_path / "labels.npy"), *endpoint)
    assert status == 0
    np.testing.assert_array_equal(np.array(out.split(), dtype=int), digits_estimator.predict(rows))
    assert f"accuracy {int((digits_estimator.predict(rows) == labels).sum())}/30" in err

    np.savetxt(tmp_path / "rows.csv", rows, delimiter=",")
    status, out, _ = run(capsys, "predict", str(tmp_path / "rows.csv"), "--scores", "--secret-key", secret, *endpoint)
    scores = np.loadtxt(out.splitlines(), delimiter=",")
    assert status == 0 and scores.shape == (30, 10)
    np.testing.assert_allclose(scores, digits_estimator.decision_function(rows), atol=1e-5)

    status, _, err = run(capsys, "keys", "delete", "--secret-key", secret, *endpoint)
    assert status == 0 and "deleted" in err and not stored(azurite, key_id)


def test_predict_without_a_key_file_leaves_no_keys_behind(app, azurite, digits, digits_estimator, tmp_path, capsys):
    X, _ = digits
    np.save(tmp_path / "rows.npy", X[1600:1603])
    before = stored_keys(azurite)
    status, out, err = run(capsys, "predict", str(tmp_path / "rows.npy"), "--endpoint", app.url)
    assert status == 0
    np.testing.assert_array_equal(np.array(out.split(), dtype=int), digits_estimator.predict(X[1600:1603]))
    assert re.search(r"key [0-9a-f]{12}\.\.\.", err)
    assert stored_keys(azurite) == before


def test_keys_straight_to_blob_storage(azurite, tmp_path, capsys):
    secret = str(tmp_path / "me.key")
    _, out, _ = run(capsys, "keys", "generate", "--secret-key", secret)  # no endpoint: default parameters
    key_id = out.strip()
    storage = ("--connection-string", azurite.connection_string, "--container", CONTAINER)
    assert run(capsys, "keys", "upload", "--secret-key", secret, *storage)[:2] == (0, key_id + "\n")
    assert stored(azurite, key_id)
    status, _, err = run(capsys, "keys", "delete", "--secret-key", secret, *storage)
    assert status == 0 and "deleted" in err and not stored(azurite, key_id)
    assert "was not there" in run(capsys, "keys", "delete", "--secret-key", secret, *storage)[2]


def test_keys_straight_to_blob_storage_through_the_services_own_settings(azurite, tmp_path, capsys, monkeypatch):
    secret = str(tmp_path / "me.key")
    key_id = run(capsys, "keys", "generate", "--secret-key", secret)[1].strip()
    monkeypatch.setenv("SCORING_STORAGE", azurite.connection_string)
    monkeypatch.setenv("SCORING_KEYS_CONTAINER", CONTAINER)
    assert run(capsys, "keys", "upload", "--secret-key", secret, "--setting", "SCORING_STORAGE")[:2] == (
        0, key_id + "\n")
    assert stored(azurite, key_id)
    assert run(capsys, "keys", "delete", "--secret-key", secret, "--setting", "SCORING_STORAGE")[0] == 0
    assert not stored(azurite, key_id)
    monkeypatch.setenv("SCORING_STORAGE__accountName", "acct")
    status, _, err = run(capsys, "keys", "upload", "--secret-key", secret, "--setting", "SCORING_STORAGE")
    assert status == 1 and "SCORING_STORAGE__accountName is not supported" in err


def test_a_file_with_the_wrong_feature_count_is_one_clear_line(app, tmp_path):
    np.savetxt(tmp_path / "bad.csv", np.zeros((3, 10)), delimiter=",")
    result = run_process("predict", str(tmp_path / "bad.csv"), "--endpoint", app.url)
    assert result.returncode == 1
    assert result.stderr.strip() == f"he-scoring: error: {tmp_path / 'bad.csv'}: records have 10 features; " \
                                    "the model takes 64"
    assert result.stdout == ""


@pytest.mark.parametrize("argv, message", [
    (("predict", "rows.txt", "--endpoint", "http://127.0.0.1:9"), "give a .npy or .csv file"),
    (("describe", "--endpoint", "http://127.0.0.1:9"), "cannot reach the service at http://127.0.0.1:9"),
    (("keys", "upload", "--secret-key", "missing.key"), "No such file or directory"),
    (("keys", "upload", "--secret-key", "{truncated}"), "truncated.key: packed secret keys are truncated"),
    (("keys", "upload", "--secret-key", "{garbage}"), "garbage.key: not a secret key file"),
])
def test_errors_exit_non_zero_without_a_traceback(argv, message, tmp_path):
    (tmp_path / "truncated.key").write_bytes(b"HESECRET\x02HESK\x01\x00\x20")
    (tmp_path / "garbage.key").write_bytes(b"\x00" * 100)
    argv = [a.format(truncated=tmp_path / "truncated.key", garbage=tmp_path / "garbage.key") for a in argv]
    result = run_process(*argv)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_existing_secret_key_file_is_never_overwritten(tmp_path):
    (tmp_path / "me.key").write_bytes(b"mine")
    result = run_process("keys", "generate", "--secret-key", str(tmp_path / "me.key"))
    assert result.returncode == 1 and "never overwritten" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "me.key").read_bytes() == b"mine"


def test_a_wrong_command_line_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["predict"])
    assert exit_.value.code == 2 and "required: input" in capsys.readouterr().err


@pytest.mark.parametrize("images,labels,message", [
    (b"\x00" * 10, b"\x00" * 8, "truncated"),
    (b"\x1f\x8b\x08\x00" + b"\x00" * 6, None, "not a complete gzip file"),
])
def test_a_damaged_mnist_folder_is_a_value_error_not_a_traceback(tmp_path, images, labels, message):
    from client.datasets import MNIST_IMAGES, MNIST_LABELS, load_mnist_test

    if labels is None:  # a cut gzip stream
        (tmp_path / f"{MNIST_IMAGES}.gz").write_bytes(images)
        (tmp_path / MNIST_LABELS).write_bytes(b"\x00" * 8)
    else:
        (tmp_path / MNIST_IMAGES).write_bytes(images)
        (tmp_path / MNIST_LABELS).write_bytes(labels)
    with pytest.raises(ValueError, match=message):
        load_mnist_test(tmp_path)
