"""Azure Functions app (Python v2 programming model): routes and bindings, nothing else.

Settings are read once, here, at start (``hosts.settings.HostSettings``): a missing or
unusable ``SCORING_STORAGE`` or ``SCORING_KEYS_CONTAINER`` fails the start with a message
naming it. The key bundle reaches ``score`` and ``challenge`` through a blob input binding on
``<SCORING_KEYS_CONTAINER>/{key_id}`` as an SDK-type ``BlobClient``
(azurefunctions-extensions-bindings-blob), so the service reads a bundle only on a cache
miss and answers a storage outage with 503 itself; ``put_keys`` stores a bundle through a
blob output binding. The work is in ``hosts.functions`` (transport glue) and
``scoring.service`` (the core every host shares). The model loads on first use.
"""

from pathlib import Path

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from hosts.functions import FunctionsHost
from hosts.http import quiet_azure_logging
from hosts.settings import KEYS_CONTAINER_SETTING, STORAGE_SETTING, HostSettings

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

quiet_azure_logging()
host = FunctionsHost(HostSettings.from_env(base_dir=Path(__file__).resolve().parent, require_storage=True))

KEYS_BLOB = f"%{KEYS_CONTAINER_SETTING}%/{{key_id}}"


@app.route(route="score/{key_id}", methods=["POST"])
@app.blob_input(arg_name="bundle", path=KEYS_BLOB, connection=STORAGE_SETTING)
def score(req: func.HttpRequest, bundle: blob.BlobClient) -> func.HttpResponse:
    return host.score(req, bundle)


@app.route(route="keys/{key_id}", methods=["PUT"])
@app.blob_input(arg_name="existing", path=KEYS_BLOB, connection=STORAGE_SETTING)
@app.blob_output(arg_name="stored", path=KEYS_BLOB, connection=STORAGE_SETTING,
                 data_type=func.DataType.BINARY)
def put_keys(req: func.HttpRequest, existing: blob.BlobClient, stored: func.Out[bytes]) -> func.HttpResponse:
    return host.put_keys(req, existing, stored)


@app.route(route="keys/{key_id}/challenge", methods=["POST"])
@app.blob_input(arg_name="bundle", path=KEYS_BLOB, connection=STORAGE_SETTING)
def challenge(req: func.HttpRequest, bundle: blob.BlobClient) -> func.HttpResponse:
    return host.challenge(req, bundle)


@app.route(route="keys/{key_id}", methods=["DELETE"])
def delete_keys(req: func.HttpRequest) -> func.HttpResponse:
    return host.delete_keys(req)


@app.route(route="model", methods=["GET"])
def model(req: func.HttpRequest) -> func.HttpResponse:
    return host.describe(req)


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return host.health(req)
