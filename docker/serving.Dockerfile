# The prediction server a Vertex AI endpoint runs (vertex.serving_image):
# `python -m serving` (serving/__main__.py lists every variable it reads).
# Vertex sets AIP_STORAGE_URI to the pushed policy's gs:// copy and the AIP_*
# port and routes at deployment; the values below are its defaults.
# Predictions and rewards go to real BigQuery in BQ_PROJECT, which TFX's Vertex
# Pusher cannot pass at deployment, so it is fixed when the image is built.
#
# Build from the repository root, once per project:
#   docker build -f docker/serving.Dockerfile --build-arg BQ_PROJECT=PROJECT \
#     -t REGION-docker.pkg.dev/PROJECT/REPO/serving:TAG .
FROM python:3.10-slim

ARG BQ_PROJECT
ARG BQ_DATASET=mlbandits
RUN test -n "$BQ_PROJECT" || { echo "pass --build-arg BQ_PROJECT=<BigQuery project>" >&2; exit 1; }

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/mlbandits
COPY requirements/pipeline.lock requirements/pipeline.lock
RUN pip install --no-deps --requirement requirements/pipeline.lock

# The server imports only the bottom package and itself (tests/test_layers.py).
COPY setup.py ./
COPY bandit_core bandit_core
COPY serving serving
RUN pip install --no-deps .

ENV AIP_HTTP_PORT=8080 \
    AIP_HEALTH_ROUTE=/health \
    AIP_PREDICT_ROUTE=/predict \
    MLBANDITS_HOST=0.0.0.0 \
    MLBANDITS_BQ_PROJECT=${BQ_PROJECT} \
    MLBANDITS_BQ_DATASET=${BQ_DATASET}
EXPOSE 8080
ENTRYPOINT ["python", "-m", "serving"]
