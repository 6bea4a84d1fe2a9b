# The Reel operator image: `reel-operator` (kopf) with the `operator` extra.
#
#   docker build -t reel-operator .                                   # from the public python image
#   podman build --network=host --build-arg BASE_IMAGE=localhost/reel-base:bookworm -t reel-operator .
#
# Stage 1 builds wheels and installs them into a virtual environment (/opt/reel); stage 2 is the base image
# plus that environment, a non-root user (UID/GID 10001) and nothing else: no compiler, no pip in the
# environment, no caches. Runs with a read-only root file system: Python writes nothing (bytecode compiled at
# build time); HOME and TMPDIR are /tmp, mount an emptyDir there (the Helm chart does).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# Only reel_api and reel_operator go into this image: an empty recorder_image/ leaves reel_recorder out.
# The kubernetes client ships an asyncio twin of itself (kubernetes/aio, ~68 MB with bytecode) that nothing
# here imports (kopf talks to the API with aiohttp, Reel uses the synchronous client): dropped.
RUN mkdir -p recorder_image \
 && python3 -m pip wheel --wheel-dir /wheels ".[operator]" \
 && python3 -m venv --without-pip /opt/reel \
 && python3 -m pip --python /opt/reel/bin/python install --no-index --find-links /wheels "reel[operator]" \
 && rm -f /opt/reel/bin/reel-recorder \
 && rm -rf /opt/reel/lib/python3*/site-packages/kubernetes/aio \
 && /opt/reel/bin/python -c "import kopf, kubernetes, kubernetes.client, kubernetes.config, kubernetes.watch, reel_api, reel_operator.main"

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="reel-operator" \
      org.opencontainers.image.description="Reel: Kubernetes operator recording Janus VideoRoom rooms into HLS" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 10001 reel \
 && useradd --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin reel
COPY --from=build /opt/reel /opt/reel
ENV PATH=/opt/reel/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp TMPDIR=/tmp
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["reel-operator"]
