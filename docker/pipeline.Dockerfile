# The image every Vertex AI pipeline step runs in (vertex.pipeline_image), and
# Dataflow's worker image (--sdk_container_image): this project installed from
# requirements/pipeline.lock, so every step imports exactly the tested versions.
#
# Build from the repository root:
#   docker build -f docker/pipeline.Dockerfile -t REGION-docker.pkg.dev/PROJECT/REPO/pipeline:TAG .
#
# Beam's SDK image brings Python 3.10 and the worker boot entry point Dataflow
# starts; its Beam version must equal the lock's. Vertex steps do not use that
# entry point: the compiled pipeline runs TFX's launcher as the command.
# The lock goes in with --no-deps over the packages Beam's image already has,
# so `pip check` at the end fails the build if the two disagree. That image is
# built on python:3.10 (Debian, with gcc): the lock's source-only packages,
# such as pyfarmhash, compile there (tests/docker checks which those are).
FROM apache/beam_python3.10_sdk:2.59.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLBANDITS_MOVIELENS_DIR=/var/cache/mlbandits/ml-100k

WORKDIR /opt/mlbandits
COPY requirements/pipeline.lock requirements/pipeline.lock
RUN pip install --no-deps --requirement requirements/pipeline.lock

COPY setup.py ./
COPY bandit_core bandit_core
COPY custom_components custom_components
COPY serving serving
COPY simulation simulation
COPY tfx_pipeline tfx_pipeline
RUN pip install --no-deps . \
    && pip check \
    && python -c "import tfx_pipeline.pipeline, custom_components.bandit_trainer.vertex_job"
