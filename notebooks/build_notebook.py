"""Write ``deploy-encrypted-inference.ipynb`` from the cells below, so the source stays readable.

    .venv/bin/python notebooks/build_notebook.py      # after editing a cell here

The notebook follows the original Azure ML tutorial "Deploy an encrypted inferencing web
service" (Azure/MachineLearningNotebooks, MIT): configure, prepare test data, make encrypted
predictions, decrypt, take the argmax, compare with the true label, clean up; on this
project's service. It is written without outputs; ``tests/test_notebook.py`` runs it and
checks that the file is what this script writes.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOK = Path(__file__).resolve().parent / "deploy-encrypted-inference.ipynb"

CELLS: list[tuple[str, str, tuple[str, ...]]] = [
    ("markdown", """\
# Deploy an encrypted inferencing web service

The flow of the Azure Machine Learning tutorial *Deploy an encrypted inferencing web service*
on this project: a scikit-learn linear model scores records that the client encrypts with
CKKS, and only the client can read the scores.

1. Configure: the service (Azure, or a local one this notebook starts), the model, the data.
2. Prepare test data.
3. Generate keys and upload the public half; the secret key never leaves this process.
4. Make encrypted predictions, decrypt them, take the argmax, compare with the true labels.
5. Clean up: delete the uploaded keys, stop the local service.

Code written for the tutorial's `encrypted-inference==0.9` runs with only its imports changed:
`from eicompat import EILinearRegressionClient` and `from eicompat import EIServer`.""", ()),
    ("markdown", """\
## Configure

With none of these environment variables set, the notebook needs no Azure account: it starts
Azurite and the Functions app on free local ports and serves a model trained on scikit-learn's
digits. Paths are relative to the project folder, as for `make demo`.""", ()),
    ("code", """\
# SCORING_ENDPOINT      your Function App, https://<app>.azurewebsites.net  (unset: a local service)
# SCORING_FUNCTION_KEY  a host key of the app (az functionapp keys set ...), sent as the x-functions-key header
# SCORING_MODEL_PATH    the served model (pickle or artifact), also the plaintext reference here,
#                       e.g. ../shared/models/sklearn_mnist_model.pkl      (unset: digits)
# MNIST_DIR             a folder of the MNIST test idx files, e.g. ../shared/data/mnist  (unset: digits)
# NOTEBOOK_RECORDS      how many test records to score                     (unset: 100)
import os
import sys
from pathlib import Path

ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "function_app.py").exists())
os.chdir(ROOT)
sys.path.insert(0, str(ROOT))

ENDPOINT = os.environ.get("SCORING_ENDPOINT")
FUNCTION_KEY = os.environ.get("SCORING_FUNCTION_KEY")
RECORDS = int(os.environ.get("NOTEBOOK_RECORDS", "100"))
print(f"service: {ENDPOINT or 'local (started below)'}")""", ("configure",)),
    ("code", """\
%matplotlib inline
import numpy as np
import matplotlib.pyplot as plt

from client import ScoringClient
from demo.__main__ import prepare_data, prepare_model
from scoring.model import read_artifact

model_path, model_label = prepare_model()   # SCORING_MODEL_PATH exported, or a model trained on digits
model = read_artifact(model_path)           # the plaintext reference
print(f"model: {model_label}, {model.n_features} features, {model.n_outputs} outputs")""", ()),
    ("markdown", """\
### Start a local service (skipped when `SCORING_ENDPOINT` is set)

Azurite holds the uploaded public keys; `devhost` serves `function_app.py` over HTTP, as
`func start` would.""", ()),
    ("code", """\
local_service = []
if ENDPOINT is None:
    from devhost import Azurite, LocalFunctionsHost, ensure_installed

    ensure_installed(ROOT)
    azurite = Azurite(port=0).start()
    local_service.append(azurite)
    os.environ.update(SCORING_STORAGE=azurite.connection_string, SCORING_KEYS_CONTAINER="hekeys",
                      SCORING_MODEL_PATH=str(model_path))
    host = LocalFunctionsHost(ROOT, port=0, load_local_settings=False).start()
    local_service.append(host)
    ENDPOINT = host.url
    print(f"Azurite on 127.0.0.1:{azurite.port}, Functions app on {ENDPOINT}")

client = ScoringClient(ENDPOINT, function_key=FUNCTION_KEY)
info = client.describe_model()
print(f"served: {info.estimator}, {info.n_features} features, classes {info.classes}; "
      f"scores carry noise within +-{info.encryption.noise_bound:.1e} (model privacy)")
same = info.model_hash == model.model_hash
print("the plaintext reference is the served model" if same else
      "WARNING: the served model differs from the plaintext reference; set SCORING_MODEL_PATH to it")""", ("start",)),
    ("markdown", "## Prepare test data", ()),
    ("code", """\
X_test, y_test, data_label = prepare_data(info.n_features, RECORDS)   # MNIST_DIR, or held-out digits
print(f"{data_label}: {len(X_test)} records of {X_test.shape[1]} features in [{X_test.min()}, {X_test.max()}]")""",
     ()),
    ("markdown", """\
## Create keys and upload the public half

The tutorial uploaded 9 MB of public keys to its own blob store and sent the storage
connection string with every request. Here the public bundle (parameters and public key, no
Galois keys) goes through `PUT /api/keys/{sha256 of the bundle}`; requests carry only that id.
`keys.to_bytes()` packs the whole key pair in 2 KB, for a key vault.""", ()),
    ("code", """\
keys = client.generate_keys()
key_id = client.upload_keys()
print(f"CKKS {keys.parameters.name}; public key bundle {len(keys.public_bundle()):,} bytes, uploaded as {key_id}")""",
     ("keys",)),
    ("markdown", "## Make an encrypted prediction, decrypt it, take the argmax", ()),
    ("code", """\
sample_index = 1
record = client.encrypt(X_test[sample_index])
print(f"encrypted record: {len(record.ciphertexts)} ciphertext(s), {sum(map(len, record.ciphertexts)):,} bytes, "
      f"begins {record.ciphertexts[0][:12].hex()}...")
answer = client.score(record)                # POST /api/score/{key id}: the server sees ciphertexts only
print(f"encrypted scores: {len(answer.ciphertexts)} ciphertext(s), {sum(map(len, answer.ciphertexts)):,} bytes")
results = client.decrypt(answer)
print("decrypted scores:", np.round(results, 3))
prediction = info.classes[int(np.argmax(results))]
print(f"prediction: {prediction}   actual label: {y_test[sample_index]}")""", ("one",)),
    ("markdown", "## Every test record: encrypted against plaintext predictions and true labels", ()),
    ("code", """\
from scoring.model import labels_from_scores

scores = np.vstack([client.decrypt(client.score(client.encrypt(x))) for x in X_test])
encrypted = labels_from_scores(info.classes, scores)          # the argmax, as the estimator's predict
plain_scores = model.decision_function(X_test)
plaintext = labels_from_scores(model.classes, plain_scores)
print(f"accuracy: {(encrypted == y_test).sum()}/{len(y_test)} encrypted predictions equal the true label")
print(f"agreement: {(encrypted == plaintext).sum()}/{len(y_test)} encrypted predictions equal the plaintext model's")
print(f"max |encrypted - plaintext score|: {np.abs(scores - plain_scores).max():.1e}")""", ("all",)),
    ("code", """\
side = int(np.sqrt(info.n_features))
shown = min(len(X_test), 24)
fig, axes = plt.subplots(3, (shown + 2) // 3, figsize=(13, 5.5))
for ax in axes.flat:
    ax.axis("off")
for i, ax in zip(range(shown), axes.flat):
    ax.imshow(X_test[i].reshape(side, side), cmap="gray_r")
    ax.set_title(f"enc {encrypted[i]} / true {y_test[i]}", fontsize=10,
                 color="black" if encrypted[i] == y_test[i] else "red")
fig.suptitle("Test digits: prediction made on encrypted data / true label")
plt.show()""", ("figure-digits",)),
    ("code", """\
from sklearn.metrics import ConfusionMatrixDisplay

display = ConfusionMatrixDisplay.from_predictions(plaintext, encrypted, labels=list(info.classes), colorbar=False)
display.ax_.set(xlabel="prediction on encrypted data", ylabel="plaintext prediction",
                title="Encrypted against plaintext predictions")
plt.show()""", ("figure-confusion",)),
    ("markdown", """\
## Clean up

Delete the uploaded public keys (the tutorial left them in its blob store) and stop the local
service. Deleting proves that this process holds the secret key: the service encrypts a
challenge under the public key, and only its owner can answer. The secret key disappears with
this process unless saved with `save_secret_key` (or packed with `keys.to_bytes()`).""", ()),
    ("code", """\
print(f"keys deleted: {client.delete_keys()}")
if local_service:
    from azure.storage.blob import BlobClient

    stored = BlobClient.from_connection_string(azurite.connection_string, "hekeys", key_id)
    print(f"key bundle in storage: {'present' if stored.exists() else 'absent'}")
    for service in reversed(local_service):
        service.stop()
    print("local service stopped")""", ("clean-up",)),
]


def build() -> nbformat.NotebookNode:
    """The notebook, without outputs, with stable cell ids."""
    notebook = new_notebook(metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    })
    for index, (kind, source, tags) in enumerate(CELLS):
        cell = new_markdown_cell(source) if kind == "markdown" else new_code_cell(source)
        cell.id = f"cell-{index:02d}"
        if tags:
            cell.metadata["tags"] = list(tags)
        notebook.cells.append(cell)
    return notebook


def main() -> int:
    nbformat.write(build(), NOTEBOOK)
    print(f"wrote {NOTEBOOK}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
