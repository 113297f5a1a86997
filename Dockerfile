# The encrypted scoring service in a container: score.py under the Azure ML inference server
# (azmlinfsrv) on port 5001, for Azure ML managed online endpoints and Azure Container Instances.
# Same core and wire format as the Azure Functions app. Build and deploy: docs/aml.md.
#
#   docker build -t hescore-aml .
#   docker run -p 127.0.0.1:5001:5001 -v "$PWD/models:/var/azureml-app/azureml-models:ro" hescore-aml
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY requirements.txt requirements-aml.txt ./
RUN pip install --no-cache-dir -r requirements-aml.txt

COPY scoring/ scoring/
COPY keystore/ keystore/
COPY hosts/ hosts/
COPY score.py ./

RUN useradd --system --no-create-home --uid 10001 scoring
USER 10001

# Where Azure ML mounts the deployment's model (it sets AZUREML_MODEL_DIR itself); for ACI, mount
# the model here or set AZUREML_MODEL_DIR / SCORING_MODEL_PATH. App Insights, if enabled, must not
# receive response bodies (ciphertexts); gunicorn's control socket is not needed in a container.
ENV AML_APP_ROOT=/app \
    PYTHONPATH=/app \
    AZUREML_MODEL_DIR=/var/azureml-app/azureml-models \
    APP_INSIGHTS_LOG_RESPONSE_ENABLED=false \
    GUNICORN_CMD_ARGS=--no-control-socket

EXPOSE 5001
# GET / answers once init() has loaded the model; slim images have no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5001/', timeout=4)"]

CMD ["azmlinfsrv", "--entry_script", "/app/score.py", "--port", "5001"]
