# syntax=docker/dockerfile:1
#
# airloop images, one file, three stages:
#
#   wheel    builds the airloop wheel from pyproject.toml + include/ (build tools stay here)
#   airflow  the official Airflow image + requirements.txt + airloop + dags/plugins/configs;
#            every Airflow service in docker-compose.yaml runs it (and the MLflow server)
#   trainer  a small image that runs `airloop train` (the DockerOperator's unit of work);
#            CPU for now, a CUDA base comes later
#
#   docker build --target airflow -t airloop-airflow .
#   docker build --target trainer -t airloop-trainer .
#
# The Airflow version is the tag of the base image and must equal the apache-airflow pin in
# requirements.txt (tests/unit/test_deployment_files.py checks it).

# torch==2.13.0 from PyPI pulls the multi-GB CUDA build; the CPU wheels live on PyTorch's
# own index. The pin itself is read from requirements.txt, so it is written down once.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# ---------------------------------------------------------------------------------------------
FROM python:3.11-slim AS wheel

WORKDIR /src
# README.md is the package's long description; the glob keeps the build going without it.
COPY pyproject.toml README.md* ./
COPY include/ include/
RUN pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /dist .

# ---------------------------------------------------------------------------------------------
FROM apache/airflow:3.3.2-python3.11 AS airflow

ARG TORCH_INDEX_URL

# The base image installs into the airflow user's ~/.local (PIP_USER=true): stay that user.
USER airflow

COPY --chown=airflow:0 requirements.txt /opt/airflow/requirements.txt
# torch first, from the CPU index; the second install then finds torch==2.13.0 satisfied.
# Naming apache-airflow==$AIRFLOW_VERSION (set by the base image) keeps pip from moving the
# image's Airflow if requirements.txt and the base tag ever disagree.
RUN pip install --no-cache-dir --disable-pip-version-check \
        --index-url "${TORCH_INDEX_URL}" \
        "$(grep -E '^torch==' /opt/airflow/requirements.txt)" \
    && pip install --no-cache-dir --disable-pip-version-check \
        "apache-airflow==${AIRFLOW_VERSION}" -r /opt/airflow/requirements.txt

COPY --chown=airflow:0 --from=wheel /dist/ /tmp/airloop-dist/
RUN pip install --no-cache-dir --disable-pip-version-check --no-deps /tmp/airloop-dist/*.whl \
    && rm -rf /tmp/airloop-dist

COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 configs/ /opt/airflow/configs/

# Mount points for named volumes: created here so fresh volumes are owned by airflow:0.
RUN mkdir -p /opt/airflow/state /opt/airflow/mlartifacts

ENV AIRLOOP_HOME=/opt/airflow/state \
    AIRLOOP_CONFIG=/opt/airflow/configs/flights.yaml

# ---------------------------------------------------------------------------------------------
FROM python:3.11-slim AS trainer

ARG TORCH_INDEX_URL

# xgboost's Linux wheels link the system OpenMP runtime, which the slim image lacks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

COPY requirements.txt /opt/airloop/requirements.txt
RUN pip install --index-url "${TORCH_INDEX_URL}" \
        "$(grep -E '^torch==' /opt/airloop/requirements.txt)" \
    && pip install -r /opt/airloop/requirements.txt

COPY --from=wheel /dist/ /tmp/airloop-dist/
RUN pip install --no-deps /tmp/airloop-dist/*.whl && rm -rf /tmp/airloop-dist

COPY configs/ /opt/airloop/configs/

# Same uid/gid as the Airflow image's user, so both can write the shared state volume.
RUN useradd --uid 50000 --gid 0 --home-dir /opt/airloop --no-create-home airloop \
    && mkdir -p /opt/airloop/state \
    && chown -R 50000:0 /opt/airloop/state
USER 50000:0
WORKDIR /opt/airloop

ENV AIRLOOP_HOME=/opt/airloop/state \
    AIRLOOP_CONFIG=/opt/airloop/configs/flights.yaml

ENTRYPOINT ["airloop", "train"]
