#!/usr/bin/env bash
# Builds Reel's images and loads them into the kind cluster (hack/kind, `make cluster-up`).
#
#   tests/images/build.sh [--no-load] IMAGE...      IMAGE: operator recorder janus publisher minio | all | project
#
#   operator   Dockerfile                     -> localhost/reel-operator:dev    (context: repository root)
#   recorder   recorder_image/Dockerfile      -> localhost/reel-recorder:dev    (context: repository root)
#   janus      tests/images/janus/Dockerfile  -> localhost/reel-janus:dev       (Debian's janus package)
#   publisher  tests/images/publisher/Dockerfile -> localhost/reel-publisher:dev (aiortc, tests/harness)
#   minio      tests/images/minio/Dockerfile  -> localhost/reel-minio:dev       (hack/build-minio.sh's binary)
#
# Same provider choice as hack/kind (lib.sh): podman + BASE_IMAGE=localhost/reel-base:bookworm here (no Docker,
# no registry; the local base trusts the host's extra CAs, for pip behind an egress proxy), docker +
# python:3.11-slim-bookworm elsewhere. An image whose ID is already in the node is not loaded again. Tags:
# OPERATOR_IMAGE, RECORDER_IMAGE, JANUS_IMAGE, PUBLISHER_IMAGE, MINIO_IMAGE.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../hack/kind/lib.sh
. "$HERE/../../hack/kind/lib.sh"
LOG_PREFIX=images
PROVIDER=$(detect_provider)
export KIND_EXPERIMENTAL_PROVIDER=$PROVIDER
if [ "$PROVIDER" = podman ]; then CLI=podman; BASE_IMAGE=${BASE_IMAGE:-$LOCAL_BASE_IMAGE}
else CLI=docker; BASE_IMAGE=${BASE_IMAGE:-$PUBLIC_BASE_IMAGE}; fi
NODE=$CLUSTER_NAME-control-plane

OPERATOR_IMAGE=${OPERATOR_IMAGE:-localhost/reel-operator:dev}
RECORDER_IMAGE=${RECORDER_IMAGE:-localhost/reel-recorder:dev}
JANUS_IMAGE=${JANUS_IMAGE:-localhost/reel-janus:dev}
PUBLISHER_IMAGE=${PUBLISHER_IMAGE:-localhost/reel-publisher:dev}
MINIO_IMAGE=${MINIO_IMAGE:-localhost/reel-minio:dev}

build() {  # build DOCKERFILE TAG CONTEXT
  local dockerfile=$1 tag=$2 context=$3 t0=$SECONDS
  log "building $tag from ${dockerfile#"$REPO_DIR"/} (BASE_IMAGE=$BASE_IMAGE)"
  if [ "$CLI" = podman ]; then
    [ "$BASE_IMAGE" != "$LOCAL_BASE_IMAGE" ] || "$KIND_DIR/build.sh" base-image >&2
    podman build --network=host --pull=never --build-arg "BASE_IMAGE=$BASE_IMAGE" \
      -f "$dockerfile" -t "$tag" "$context" >&2
  else
    docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" -f "$dockerfile" -t "$tag" "$context" >&2
  fi
  log "built $tag in $((SECONDS - t0)) s: $($CLI image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
}

load() {  # load TAG: into the kind node, unless the node has this very image already
  local tag=$1 want have archive
  local clusters="" _try
  for _try in 1 2 3; do  # podman under load has failed this listing now and then: try again before giving up
    clusters=$(kind get clusters 2>&1) && grep -qx "$CLUSTER_NAME" <<<"$clusters" && break
    sleep 2
  done
  grep -qx "$CLUSTER_NAME" <<<"$clusters" \
    || die "no cluster $CLUSTER_NAME: make cluster-up first (kind get clusters: ${clusters//$'\n'/; })"
  want=$($CLI image inspect -f '{{.Id}}' "$tag"); want=${want#sha256:}
  have=$($CLI exec "$NODE" crictl inspecti -o go-template --template '{{.status.id}}' "$tag" 2>/dev/null || true)
  if [ "${have#sha256:}" = "$want" ]; then log "$tag: already in the cluster"; return 0; fi
  if [ "$CLI" = podman ]; then
    mkdir -p "$IMG_DIR"
    archive=$(mktemp "$IMG_DIR/load-XXXXXX.tar")
    rm -f "$archive"
    podman save -q --format docker-archive -o "$archive" "$tag"
    kind load image-archive "$archive" --name "$CLUSTER_NAME" >&2 || { rm -f "$archive"; return 1; }
    rm -f "$archive"
  else
    kind load docker-image "$tag" --name "$CLUSTER_NAME" >&2
  fi
  log "loaded $tag into cluster $CLUSTER_NAME"
}

one() {  # one NAME -> builds (and loads) it
  local tag ctx
  case $1 in
    operator) tag=$OPERATOR_IMAGE; build "$REPO_DIR/Dockerfile" "$tag" "$REPO_DIR" ;;
    recorder) tag=$RECORDER_IMAGE; build "$REPO_DIR/recorder_image/Dockerfile" "$tag" "$REPO_DIR" ;;
    janus) tag=$JANUS_IMAGE; build "$HERE/janus/Dockerfile" "$tag" "$HERE/janus" ;;
    publisher) tag=$PUBLISHER_IMAGE; build "$HERE/publisher/Dockerfile" "$tag" "$REPO_DIR" ;;
    minio)
      tag=$MINIO_IMAGE
      local bin; bin=$("$REPO_DIR/hack/build-minio.sh" | tail -1)
      ctx=$(mktemp -d)
      cp "$HERE/minio/Dockerfile" "$bin" "$ctx/"
      build "$ctx/Dockerfile" "$tag" "$ctx" || { rm -rf "$ctx"; return 1; }
      rm -rf "$ctx" ;;
    *) die "unknown image $1 (operator recorder janus publisher minio all project)" ;;
  esac
  [ "$LOAD" = 0 ] || load "$tag"
}

LOAD=1
[ "${1:-}" != --no-load ] || { LOAD=0; shift; }
[ $# -gt 0 ] || die "usage: $0 [--no-load] operator|recorder|janus|publisher|minio|project|all..."
for name in "$@"; do
  case $name in
    all) for n in operator recorder janus publisher minio; do one "$n"; done ;;
    project) one operator; one recorder ;;
    *) one "$name" ;;
  esac
done
