# syntax=docker/dockerfile:1
#
# airloop images, one file, three stages:
#
#   wheel    builds the airloop wheel from pyproject.toml + include/ (build tools stay here)
#   airflow  the official Airflow image + requirements.txt + airloop + dags/plugins/configs;
#            every Airflow service in docker-compose.yaml runs it (and the MLflow server)
#   trainer  runs `airloop train` (the DockerOperator's unit of work, one container per
#            trial): the CUDA builds of torch and xgboost from PyPI, which carry the CUDA
#            runtime libraries; the host's NVIDIA driver comes in through the NVIDIA
#            Container Toolkit when the operator requests a GPU
#
#   docker build --target airflow -t airloop-airflow .
#   docker build --target trainer -t airloop-trainer .
#
# The Airflow version is the tag of the base image and must equal the apache-airflow pin in
# requirements.txt (tests/unit/test_deployment_files.py checks it).

# torch==2.13.0 from PyPI is the multi-GB CUDA build: right for the trainer, wasted on the
# Airflow services, which take the CPU wheel from PyTorch's own index. The pin itself is
# read from requirements.txt, so it is written down once.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Images hold no .git: the commit they were built from is recorded on every training run.
#   docker compose build --build-arg AIRLOOP_GIT_COMMIT=$(git rev-parse HEAD)
ARG AIRLOOP_GIT_COMMIT=unknown

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

# `airloop serve` moves traffic between a model's servers through Debian's HAProxy.
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends haproxy \
    && rm -rf /var/lib/apt/lists/*

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

ARG AIRLOOP_GIT_COMMIT
# airloop is a wheel here, not a checkout: AIRLOOP_PROJECT_ROOT says where its dags/,
# plugins/ and configs/ are. Every configs/*.yaml is a model (configs/overlays/ holds no
# models); docker-compose.yaml names them and the overlays explicitly as well.
ENV AIRLOOP_HOME=/opt/airflow/state \
    AIRLOOP_PROJECT_ROOT=/opt/airflow \
    AIRLOOP_GIT_COMMIT=${AIRLOOP_GIT_COMMIT}

# ---------------------------------------------------------------------------------------------
FROM python:3.11-slim AS trainer

# xgboost's Linux wheels link the system OpenMP runtime, which the slim image lacks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    # What the NVIDIA Container Toolkit exposes when a GPU is requested: the device and the
    # driver's compute and monitoring libraries (nvidia-smi).
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

COPY requirements.txt /opt/airloop/requirements.txt
# From PyPI: torch==2.13.0 and xgboost==3.2.0 there are the CUDA builds.
RUN pip install -r /opt/airloop/requirements.txt

COPY --from=wheel /dist/ /tmp/airloop-dist/
RUN pip install --no-deps /tmp/airloop-dist/*.whl && rm -rf /tmp/airloop-dist

COPY configs/ /opt/airloop/configs/

# Same uid/gid as the Airflow image's user, so both can write the shared state volume.
RUN useradd --uid 50000 --gid 0 --home-dir /opt/airloop --no-create-home airloop \
    && mkdir -p /opt/airloop/state \
    && chown -R 50000:0 /opt/airloop/state
USER 50000:0
WORKDIR /opt/airloop

ARG AIRLOOP_GIT_COMMIT
# `airloop train` takes its model's config from the request file, so no model is named here;
# configs/ is what `airloop devices` reads (AIRLOOP_PROJECT_ROOT: the wheel knows no checkout).
ENV AIRLOOP_HOME=/opt/airloop/state \
    AIRLOOP_PROJECT_ROOT=/opt/airloop \
    AIRLOOP_GIT_COMMIT=${AIRLOOP_GIT_COMMIT}

# No ENTRYPOINT: the DockerOperator's command is the whole `airloop train --request ...`
# line, the same one the local runner executes. Run bare, it says what device it sees.
CMD ["airloop", "devices"]
