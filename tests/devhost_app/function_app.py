"""A tiny Python v2 app for tests/test_devhost.py: HTTP routes with blob input/output bindings."""

import json
from typing import Optional

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

BLOB = "%SAMPLE_CONTAINER%/{name}"


@app.route(route="echo/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def echo(req: func.HttpRequest) -> func.HttpResponse:
    payload = {"route": dict(req.route_params), "query": dict(req.params), "method": req.method,
               "header": req.headers.get("x-sample")}
    return func.HttpResponse(json.dumps(payload), mimetype="application/json")


@app.route(route="blobs/{name}", methods=["PUT"])
@app.blob_input(arg_name="before", path=BLOB, connection="SAMPLE_STORAGE")
@app.blob_output(arg_name="after", path=BLOB, connection="SAMPLE_STORAGE")
def put_blob(req: func.HttpRequest, before: Optional[func.InputStream],
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
def get_blob(req: func.HttpRequest, blob: Optional[bytes]) -> func.HttpResponse:
    if blob is None:
        return func.HttpResponse("no such blob", status_code=404)
    return func.HttpResponse(blob, mimetype="application/octet-stream",
                             headers={"X-Blob-Type": type(blob).__name__})


@app.route(route="text/{name}", methods=["GET"])
@app.blob_input(arg_name="text", path=BLOB, connection="SAMPLE_STORAGE")
def get_text(req: func.HttpRequest, text: str) -> str:
    return f"{type(text).__name__}:{text}"


@app.route(route="boom", methods=["GET", "POST"])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret-internal-detail")


@app.route(route="items/{id:int}", methods=["GET"])
async def item(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"item {int(req.route_params['id'])}")
