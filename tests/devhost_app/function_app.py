"""A small Python v2 app for tests/test_devhost.py: HTTP routes, blob bindings, auth levels.

Every annotation passes the Python worker's load-time checks (no ``Optional[...]``: a missing
blob still arrives as ``None``).
"""

import json
import os
import threading
import time

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob_sdk

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

BLOB = "%SAMPLE_CONTAINER%/{name}"


@app.route(route="echo/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def echo(req: func.HttpRequest) -> func.HttpResponse:
    payload = {"route": dict(req.route_params), "query": dict(req.params), "method": req.method,
               "header": req.headers.get("x-sample")}
    return func.HttpResponse(json.dumps(payload), mimetype="application/json")


@app.route(route="blobs/{name}", methods=["PUT"])
@app.blob_input(arg_name="before", path=BLOB, connection="SAMPLE_STORAGE",
                data_type=func.DataType.BINARY)
@app.blob_output(arg_name="after", path=BLOB, connection="SAMPLE_STORAGE")
def put_blob(req: func.HttpRequest, before: func.InputStream,
             after: func.Out[bytes]) -> func.HttpResponse:
    after.set(req.get_body())
    existed = before is not None
    report = {"existed": existed, "type": type(before).__name__,
              "previous_size": len(before.read()) if existed else None}
    return func.HttpResponse(json.dumps(report), status_code=200 if existed else 201,
                             mimetype="application/json")


@app.route(route="blobs/{name}", methods=["GET"])
@app.blob_input(arg_name="blob", path=BLOB, connection="SAMPLE_STORAGE",
                data_type=func.DataType.BINARY)
def get_blob(req: func.HttpRequest, blob: bytes) -> func.HttpResponse:
    if blob is None:
        return func.HttpResponse("no such blob", status_code=404)
    return func.HttpResponse(blob, mimetype="application/octet-stream",
                             headers={"X-Blob-Type": type(blob).__name__})


@app.route(route="text/{name}", methods=["GET"])
@app.blob_input(arg_name="text", path=BLOB, connection="SAMPLE_STORAGE")
def get_text(req: func.HttpRequest, text: str) -> str:
    return f"{type(text).__name__}:{text}"


@app.route(route="sdk/{name}", methods=["GET"])
@app.blob_input(arg_name="client", path=BLOB, connection="SAMPLE_STORAGE")
def sdk_blob(req: func.HttpRequest, client: blob_sdk.BlobClient) -> func.HttpResponse:
    """An SDK-type binding: the worker builds the BlobClient; the host reads nothing."""
    exists = client.exists()
    size = client.get_blob_properties().size if exists else None
    return func.HttpResponse(json.dumps({"type": type(client).__name__, "blob": client.blob_name,
                                         "size": size}), mimetype="application/json")


@app.route(route="boom", methods=["GET", "POST"])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret-internal-detail")


@app.route(route="items/{id:int}", methods=["GET"])
async def item(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return func.HttpResponse(f"item {int(req.route_params['id'])} by {context.function_name}")


@app.route(route="hello", methods=["GET"])
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("hello")


@app.route(route="other", methods=["GET"])
def other(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("other")


@app.route(route="admin", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def admin(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin")


@app.route(route="payload/{size:int}", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def payload(req: func.HttpRequest) -> func.HttpResponse:
    """Answers ``size`` bytes; says how many body bytes and which framing it was given."""
    return func.HttpResponse(b"r" * int(req.route_params["size"]), mimetype="application/octet-stream",
                             headers={"X-Body-Length": str(len(req.get_body())),
                                      "X-Transfer-Encoding": req.headers.get("transfer-encoding", "")})


@app.route(route="where/{ms:int}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def where(req: func.HttpRequest) -> func.HttpResponse:
    """Sleeps ``ms`` milliseconds in a sync thread; says which worker process and thread ran it."""
    time.sleep(int(req.route_params["ms"]) / 1000)
    return func.HttpResponse(json.dumps({"pid": os.getpid(), "thread": threading.current_thread().name}),
                             mimetype="application/json")
