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
#
# The slim base has no compiler: requirements/serving.lock holds only what the
# server imports (TensorFlow and TF-Agents, no TFX or Beam), and every package
# in it has a manylinux wheel or is pure Python (tests/docker checks both).
FROM python:3.10-slim-bookworm

ARG BQ_PROJECT
ARG BQ_DATASET=mlbandits
RUN test -n "$BQ_PROJECT" || { echo "pass --build-arg BQ_PROJECT=<BigQuery project>" >&2; exit 1; }

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/mlbandits
COPY requirements/serving.lock requirements/serving.lock
RUN pip install --no-deps --requirement requirements/serving.lock \
    && pip check

# The server runs as this unprivileged user; its home holds the log spool.
RUN useradd --uid 10001 --user-group --home-dir /var/lib/mlbandits --create-home \
      --shell /usr/sbin/nologin mlbandits \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/mlbandits

# The server imports only the bottom package and itself (tests/test_layers.py),
# which run from here rather than being installed: setup.py names the whole
# pipeline's dependencies, which this image deliberately lacks.
COPY bandit_core bandit_core
COPY serving serving

ENV PYTHONPATH=/opt/mlbandits \
    HOME=/var/lib/mlbandits \
    MLBANDITS_SPOOL_PATH=/var/lib/mlbandits/serving-spool.sqlite \
    AIP_HTTP_PORT=8080 \
    AIP_HEALTH_ROUTE=/health \
    AIP_PREDICT_ROUTE=/predict \
    MLBANDITS_HOST=0.0.0.0 \
    MLBANDITS_BQ_PROJECT=${BQ_PROJECT} \
    MLBANDITS_BQ_DATASET=${BQ_DATASET}
RUN python -c "import serving.__main__"
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["python", "-m", "serving"]
