"""The tutorial notebook, executed top to bottom in a real kernel against a real local service."""

from __future__ import annotations

import importlib.util
import re
import sys

import pytest

from conftest import MNIST_DIR, ROOT

for _module in ("nbformat", "nbclient", "ipykernel", "matplotlib"):
    pytest.importorskip(_module, reason="the notebook's packages: pip install -r requirements-notebook.txt")

import nbformat  # noqa: E402
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

NOTEBOOKS = ROOT / "notebooks"
CONFIG_VARIABLES = ("SCORING_ENDPOINT", "SCORING_FUNCTION_KEY", "SCORING_MODEL_PATH", "MNIST_DIR", "NOTEBOOK_RECORDS")


def builder():
    spec = importlib.util.spec_from_file_location("build_notebook", NOTEBOOKS / "build_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def execute(monkeypatch, **environment: str) -> dict[str, str | list]:
    """Run the notebook with only ``environment`` configured; return each tagged cell's outputs."""
    for name in CONFIG_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    # jupyter_client starts the "python3" kernel with this interpreter (the venv's) when its argv says python.
    assert KernelSpecManager().get_kernel_spec("python3").argv[0] in ("python", sys.executable)
    notebook = nbformat.read(builder().NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = {}
    for cell in notebook.cells:
        for tag in cell.metadata.get("tags", []):
            outputs[tag] = cell.outputs
    return outputs


def text(outputs: list) -> str:
    return "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.name == "stdout")


def count_line(pattern: str, outputs: list) -> tuple[int, int]:
    match = re.search(pattern, text(outputs))
    assert match, f"no line matching {pattern!r} in:\n{text(outputs)}"
    return int(match.group(1)), int(match.group(2))


def has_png(outputs: list) -> bool:
    return any("image/png" in o.get("data", {}) for o in outputs if o.output_type == "display_data")


def check_run(outputs: dict, records: int, min_accuracy: float) -> None:
    correct, total = count_line(r"accuracy: (\d+)/(\d+)", outputs["all"])
    agree, total_agree = count_line(r"agreement: (\d+)/(\d+)", outputs["all"])
    assert total == total_agree == records
    assert agree == total, "encrypted predictions must equal the plaintext model's"
    assert correct >= min_accuracy * total
    error = float(re.search(r"max \|encrypted - plaintext score\|: (\S+)", text(outputs["all"])).group(1))
    assert error <= 1e-5
    one = text(outputs["one"])
    assert re.search(r"encrypted record: 1 ciphertext\(s\), [\d,]+ bytes", one)
    assert re.search(r"prediction: (\d+)   actual label: \1", one), one  # the tutorial's sample is right
    keys = re.search(r"public key bundle ([\d,]+) bytes, uploaded as [0-9a-f]{64}", text(outputs["keys"]))
    assert keys and int(keys.group(1).replace(",", "")) <= 140_000  # the README's target for the bundle
    assert has_png(outputs["figure-digits"]) and has_png(outputs["figure-confusion"])
    cleanup = text(outputs["clean-up"])
    assert "keys deleted: True" in cleanup
    assert "key bundle in storage: absent" in cleanup
    assert "local service stopped" in cleanup


def test_the_notebook_is_what_its_builder_writes():
    written = nbformat.read(builder().NOTEBOOK, as_version=4)
    built = builder().build()
    assert [(c.cell_type, c.source, c.metadata.get("tags")) for c in written.cells] == [
        (c.cell_type, c.source, c.metadata.get("tags")) for c in built.cells], \
        "run .venv/bin/python notebooks/build_notebook.py"
    assert all(not c.get("outputs") for c in written.cells), "the notebook is kept without outputs"


def test_the_first_cell_names_the_configuration():
    first_code = next(c for c in builder().build().cells if c.cell_type == "code")
    for name in CONFIG_VARIABLES:
        assert name in first_code.source


def test_notebook_runs_on_local_defaults_without_azure(monkeypatch):
    outputs = execute(monkeypatch)
    assert "service: local" in text(outputs["configure"])
    assert "the plaintext reference is the served model" in text(outputs["start"])
    check_run(outputs, records=100, min_accuracy=0.9)


def test_notebook_runs_the_tutorial_model_on_mnist(monkeypatch, tutorial_model_path, mnist):
    outputs = execute(monkeypatch, SCORING_MODEL_PATH=str(tutorial_model_path), MNIST_DIR=str(MNIST_DIR),
                      NOTEBOOK_RECORDS="30")
    assert "served: LogisticRegression, 784 features" in text(outputs["start"])
    assert "the plaintext reference is the served model" in text(outputs["start"])
    check_run(outputs, records=30, min_accuracy=0.85)
