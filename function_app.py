"""Azure Functions app (Python v2 programming model): routes and bindings, nothing else.

The key bundle reaches ``score`` through a blob input binding on
``<SCORING_KEYS_CONTAINER>/{key_id}`` over the connection named by ``SCORING_STORAGE``,
as an SDK-type ``BlobClient`` (azurefunctions-extensions-bindings-blob): the service
reads the bundle only when its ETag changed, sees a deletion at once, and answers a
storage outage with 503 instead of the host's 500. ``put_keys`` stores a bundle through
a blob output binding. The work is in ``hosts.functions``
(transport glue) and ``scoring.service`` (the core every host shares).
"""

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from hosts import functions as host
from hosts.storage import KEYS_CONTAINER_SETTING, STORAGE_SETTING

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

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


@app.route(route="keys/{key_id}", methods=["DELETE"])
def delete_keys(req: func.HttpRequest) -> func.HttpResponse:
    return host.delete_keys(req)


@app.route(route="model", methods=["GET"])
def model(req: func.HttpRequest) -> func.HttpResponse:
    return host.describe(req)


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return host.health(req)
