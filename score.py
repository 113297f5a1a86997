"""Azure ML entry script: the encrypted scoring service under the Azure ML inference server.

``azmlinfsrv --entry_script score.py`` calls ``init()`` once per worker and ``run()`` per request
to ``/score``; the glue is in ``hosts/aml.py``, the work in ``scoring/`` (shared with the
Azure Functions app). Requests, settings and deployment: docs/aml.md.
"""

import os
import sys

from azureml_inference_server_http.api.aml_request import rawhttp
from azureml_inference_server_http.api.aml_response import AMLResponse
from flask import Request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # azmlinfsrv loads this file by path

from hosts import aml


def init() -> None:
    """Once per worker: settings from the environment, the model loaded."""
    aml.init()


@rawhttp
def run(request: Request) -> AMLResponse:
    """Every request to /score, whatever its method: the host sets the status."""
    return aml.run(request)
