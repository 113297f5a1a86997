"""Migration from encrypted-inference 0.9: the tutorial's own code, with only its imports changed.

The tutorial's scoring script and client cells below are those of Azure/MachineLearningNotebooks
(tutorials/image-classification-mnist-data/img-classification-part3-deploy-encrypted.ipynb,
MIT), with the original import lines; :func:`migrate` changes exactly those. The Azure ML
parts stand in as follows: the model folder is a temporary folder, the workspace's blob
store is Azurite, and ``service.run`` calls the scoring script's ``run`` through JSON, as the
deployed web service does.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re

import joblib
import numpy as np
import pytest
from azure.storage.blob import BlobServiceClient

from eicompat import EILinearRegressionClient, EIServer
from eicompat.standard import FRAME, RESULT_MAGIC, decode_frames
from scoring.errors import BadRequest, CiphertextRejected, KeysRejected
from scoring.keys import load_bundle
from scoring.model import ModelError

MIGRATION = {
    "from encrypted.inference.eiserver import EIServer": "from eicompat import EIServer",
    "from encrypted.inference.eiclient import EILinearRegressionClient":
        "from eicompat import EILinearRegressionClient",
}

TUTORIAL_SCORE_PY = '''\
import json
import os
import pickle
import joblib
from azure.storage.blob import BlobServiceClient, BlobClient, ContainerClient, PublicAccess
from encrypted.inference.eiserver import EIServer

def init():
    global model
    # AZUREML_MODEL_DIR is an environment variable created during deployment.
    # It is the path to the model folder (./azureml-models/$MODEL_NAME/$VERSION)
    # For multiple models, it points to the folder containing all deployed models (./azureml-models)
    model_path = os.path.join(os.getenv('AZUREML_MODEL_DIR'), 'sklearn_mnist_model.pkl')
    model = joblib.load(model_path)

    global server
    server = EIServer(model.coef_, model.intercept_, verbose=True)

def run(raw_data):

    json_properties = json.loads(raw_data)

    key_id = json_properties['key_id']
    conn_str = json_properties['conn_str']
    container = json_properties['container']
    data = json_properties['data']

    # download the Galois keys from blob storage
    #TODO optimize by caching the keys locally
    blob_service_client = BlobServiceClient.from_connection_string(conn_str=conn_str)
    blob_client = blob_service_client.get_blob_client(container=container, blob=key_id)
    public_keys = blob_client.download_blob().readall()

    result = {}
    # make prediction
    result = server.predict(data, public_keys)

    # you can return any data type as long as it is JSON-serializable
    return result
'''

TUTORIAL_CREATE_CLIENT = '''\
from encrypted.inference.eiclient import EILinearRegressionClient

# Create a new Encrypted inference client and a new secret key.
edp = EILinearRegressionClient(verbose=True)

public_keys_blob, public_keys_data = edp.get_public_keys()
'''

# The tutorial wrote the keys to a file and called datastore.upload_files; this is that upload.
UPLOAD_TO_BLOB_STORE = '''\
BlobServiceClient.from_connection_string(conn_str).get_container_client(container_name) \\
    .upload_blob(public_keys_blob, public_keys_data, overwrite=True)
'''

TUTORIAL_ENCRYPT = '''\
#encrypt the data
raw_data = edp.encrypt(X_test[sample_index])
'''

# The tutorial's next cell, without its Azure ML lines (service = Webservice(ws, ...) and
# conn_str built from the datastore's account key): those are the stand-ins' job here.
TUTORIAL_CALL = '''\
import json

#build the json
data = json.dumps({"data": raw_data, "key_id" : public_keys_blob, "conn_str" : conn_str, "container" : container_name })
data = bytes(data, encoding='ASCII')

print ('Making an encrypted inference web service call ')
eresult = service.run(input_data=data)

print ('Received encrypted inference results')
'''

TUTORIAL_DECRYPT = '''\
import numpy as np

results = edp.decrypt(eresult)

print ('Decrypted the results ', results)

#Apply argmax to identify the prediction result
prediction = np.argmax(results)

print ( ' Prediction : ', prediction)
print ( ' Actual Label : ', y_test[sample_index])
'''


def migrate(source: str) -> str:
    """The tutorial's code with its encrypted-inference imports changed; nothing else."""
    migrated = source
    for old, new in MIGRATION.items():
        migrated = migrated.replace(old, new)
    changed = [(a, b) for a, b in zip(source.splitlines(), migrated.splitlines(), strict=True) if a != b]
    assert all(a in MIGRATION for a, _ in changed), "only import lines may change"
    return migrated


class Webservice:
    """``azureml.core.Webservice`` as the tutorial uses it: ``run`` through JSON to score.py."""

    def __init__(self, score_module) -> None:
        self.score = score_module

    def run(self, input_data: bytes):
        return json.loads(json.dumps(self.score.run(input_data)))


def deploy_score_py(tmp_path, monkeypatch, estimator):
    """Write the migrated score.py and the model as the deployment would; import it; init()."""
    model_dir = tmp_path / "azureml-models"
    model_dir.mkdir()
    joblib.dump(estimator, model_dir / "sklearn_mnist_model.pkl")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(model_dir))
    (tmp_path / "score.py").write_text(migrate(TUTORIAL_SCORE_PY))
    spec = importlib.util.spec_from_file_location("tutorial_score", tmp_path / "score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.init()
    return module


@pytest.fixture(params=["digits", "mnist"])
def tutorial_case(request, digits, digits_estimator):
    """(estimator, X_test, y_test, sample indices): digits always, the tutorial's model on MNIST if present."""
    if request.param == "digits":
        X, y = digits
        return digits_estimator, X[1500:], y[1500:], range(0, 60, 2)
    X, y = request.getfixturevalue("mnist")
    with pytest.warns(Warning, match="0.22.1"):  # the tutorial's pickle, as it is
        estimator = joblib.load(request.getfixturevalue("tutorial_model_path"))
    return estimator, X, y, range(0, 10_000, 333)


def test_the_tutorials_code_runs_with_only_its_imports_changed(tutorial_case, azurite, tmp_path, monkeypatch,
                                                               capsys):
    estimator, X_test, y_test, samples = tutorial_case
    service = Webservice(deploy_score_py(tmp_path, monkeypatch, estimator))
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client("tutorialkeys")
    if not container.exists():
        container.create_container()  # the workspace's blob store, which the tutorial already had
    cells = dict(X_test=X_test, y_test=y_test, service=service, BlobServiceClient=BlobServiceClient,
                 conn_str=azurite.connection_string, container_name="tutorialkeys")
    exec(migrate(TUTORIAL_CREATE_CLIENT), cells)
    exec(UPLOAD_TO_BLOB_STORE, cells)
    predictions, scores = [], []
    for sample_index in samples:
        cells["sample_index"] = sample_index
        exec(migrate(TUTORIAL_ENCRYPT), cells)
        exec(migrate(TUTORIAL_CALL), cells)
        exec(migrate(TUTORIAL_DECRYPT), cells)
        predictions.append(cells["prediction"])
        scores.append(cells["results"])

    rows = X_test[list(samples)]
    np.testing.assert_array_equal(predictions, np.argmax(estimator.decision_function(rows), axis=1))
    np.testing.assert_array_equal(predictions, estimator.predict(rows))
    np.testing.assert_allclose(np.array(scores), estimator.decision_function(rows), atol=1e-5)
    printed = capsys.readouterr().out
    assert re.search(r"Public keys ID: [0-9a-f]{64}", printed) and " Prediction :  " in printed


def test_return_types_follow_encrypted_inference_0_9(digits, digits_estimator):
    X, _ = digits
    edp = EILinearRegressionClient()
    public_keys_blob, public_keys_data = edp.get_public_keys()
    assert isinstance(public_keys_blob, str) and re.fullmatch(r"[0-9a-f]{64}", public_keys_blob)
    assert isinstance(public_keys_data, bytes)
    assert load_bundle(public_keys_data, public_keys_blob).key_id == public_keys_blob  # public, named by its hash
    raw_data = edp.encrypt(X[1500])
    assert isinstance(raw_data, list) and all(isinstance(c, str) for c in raw_data)
    result = EIServer(digits_estimator.coef_, digits_estimator.intercept_).predict(raw_data, public_keys_data)
    assert isinstance(result, list) and all(isinstance(c, str) for c in result)
    scores = edp.decrypt(result)
    assert isinstance(scores, np.ndarray) and scores.dtype == np.float64 and scores.shape == (10,)


def test_a_saved_secret_key_decrypts_later(digits, digits_estimator, tmp_path):
    X, _ = digits
    edp = EILinearRegressionClient()
    server = EIServer(digits_estimator.coef_, digits_estimator.intercept_)
    result = server.predict(edp.encrypt(X[1501]), edp.get_public_keys()[1])
    edp.save_secret_key(tmp_path / "me.key")
    restored = EILinearRegressionClient(str(tmp_path / "me.key"))
    assert restored.key_id == edp.key_id
    np.testing.assert_allclose(restored.decrypt(result), digits_estimator.decision_function(X[1501:1502])[0],
                               atol=1e-5)


def test_many_outputs_and_wide_records_split_as_both_halves_agree():
    rng = np.random.default_rng(7)
    coef, intercept = rng.uniform(-1, 1, size=(30, 9000)) / 100, rng.uniform(-1, 1, size=30)
    x = rng.uniform(-1, 1, size=9000)
    edp = EILinearRegressionClient()
    raw = edp.encrypt(x)
    result = EIServer(coef, intercept).predict(raw, edp.get_public_keys()[1])
    assert (len(raw), len(result)) == (2, 30)  # 2 chunks of 4500 features; one output per product
    np.testing.assert_allclose(edp.decrypt(result), coef @ x + intercept, atol=1e-5)
    with pytest.raises(ValueError, match="holds 29 ciphertext"):
        edp.decrypt(result[:-1])
    with pytest.raises(ValueError, match="out of order"):
        decode_frames(RESULT_MAGIC, result[::-1], ValueError)


def test_refusals(digits, digits_estimator):
    X, _ = digits
    edp = EILinearRegressionClient()
    public_keys = edp.get_public_keys()[1]
    server = EIServer(digits_estimator.coef_, digits_estimator.intercept_)
    with pytest.raises(ValueError, match=r"\|x\| <= input_bound"):
        edp.encrypt(X[1500] * 16)  # unscaled pixels: the standard encoding takes [-1, 1]
    with pytest.raises(ValueError, match="1-D"):
        edp.encrypt(X[1500:1502])
    with pytest.raises(ValueError, match="at least one feature"):
        edp.encrypt([])
    with pytest.raises(CiphertextRejected, match="the record has 784 features; this model takes 64"):
        server.predict(edp.encrypt(np.zeros(784)), public_keys)  # one ciphertext, as a 64-feature record
    with pytest.raises(KeysRejected):
        server.predict(edp.encrypt(X[1500]), public_keys[:-1])
    with pytest.raises(ValueError, match="2-D"):
        EIServer(digits_estimator.coef_[0], digits_estimator.intercept_)
    with pytest.raises(ModelError, match="too large for the standard encoding"):
        EIServer(np.full((1, 64), 2.0 ** 24), [0.0])
    with pytest.raises(ValueError, match="not a result"):
        edp.decrypt([base64.b64encode(b"x" * FRAME.size).decode()])
    with pytest.raises(ValueError, match="non-empty list"):
        edp.decrypt([])
    with pytest.raises(BadRequest, match="not a record encrypted by EILinearRegressionClient"):
        server.predict(server.predict(edp.encrypt(X[1500]), public_keys), public_keys)
