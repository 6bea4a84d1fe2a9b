# Shared settings for hack/kind/*.sh. Sourced, not executed.
# Versions of the Go programs live in the go.mod files under hack/kind/modules/; the ones below are
# the names and tags the node image and the cluster use.
KIND_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$KIND_DIR/../.." && pwd)
export REEL_CACHE=${REEL_CACHE:-$HOME/.cache/reel}
BIN_DIR=$REEL_CACHE/bin
IMG_DIR=$REEL_CACHE/images
STAMP_DIR=$REEL_CACHE/stamps

K8S_VERSION=v1.37.2
ETCD_IMAGE_TAG=3.7.0-0          # kubeadm v1.37.2: constants.DefaultEtcdVersion
COREDNS_IMAGE_TAG=v1.14.6       # kubeadm v1.37.2: constants.CoreDNSVersion
PAUSE_TAGS="3.10.2 3.10"        # kubeadm wants 3.10.2; the node's containerd sandbox_image is 3.10
NODE_IMAGE=localhost/reel-kind-node:$K8S_VERSION
LOCAL_BASE_IMAGE=localhost/reel-base:bookworm
# NetworkPolicy enforcement on the podman cluster (hack/kind/netpol/): built by build.sh, loaded by cluster.sh
NETPOL_IMAGE=localhost/reel-kube-router:v2.1.0
NETPOL_ARCHIVE=$IMG_DIR/kube-router-v2.1.0.tar
PUBLIC_BASE_IMAGE=python:3.11-slim-bookworm
# REEL_CLUSTER=NAME gives a private cluster (own node, network and kubeconfig) next to the shared `reel`
CLUSTER_NAME=${REEL_CLUSTER:-reel}
if [ "$CLUSTER_NAME" = reel ]; then KUBECONFIG_PATH=$REEL_CACHE/kubeconfig
else KUBECONFIG_PATH=$REEL_CACHE/kubeconfig-$CLUSTER_NAME; fi
export KUBECONFIG_PATH
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

export PATH=$BIN_DIR:/usr/local/go/bin:$PATH

log() { printf '%s %s\n' "[$(date +%H:%M:%S)] ${LOG_PREFIX:-kind}:" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# hash_inputs FILE_OR_DIR... : one sha256 over the content (and names) of the given inputs.
hash_inputs() {
  local p
  for p in "$@"; do
    if [ -d "$p" ]; then
      (cd "$p" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    else
      printf '%s\n' "$p"; sha256sum < "$p"
    fi
  done | sha256sum | cut -d' ' -f1
}
# stamp_ok NAME HASH: true when NAME was last built from inputs with this HASH.
stamp_ok() { [ -f "$STAMP_DIR/$1" ] && [ "$(cat "$STAMP_DIR/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$STAMP_DIR"; printf '%s\n' "$2" > "$STAMP_DIR/$1"; }

# Provider: the docker provider with stock kind images when a Docker engine answers, else podman
# with the node image built here. REEL_KIND_PROVIDER=podman|docker overrides.
detect_provider() {
  if [ -n "${REEL_KIND_PROVIDER:-}" ]; then echo "$REEL_KIND_PROVIDER"
  elif command -v docker >/dev/null 2>&1 && ! docker --version 2>/dev/null | grep -qi podman \
       && docker info >/dev/null 2>&1; then echo docker
  else echo podman
  fi
}

# Rootful podman here needs runc and default ulimits within the host's hard limits (its built-in default,
# nofile=1048576, is refused when the hard limit is lower: 20000 on these machines). Rather than edit
# /etc/containers, point podman (and kind, which runs podman) at a containers.conf of ours.
ensure_podman_conf() {
  [ -z "${CONTAINERS_CONF:-}" ] || return 0
  if grep -qs '^default_ulimits' /etc/containers/containers.conf; then return 0; fi
  local nofile nproc conf=$REEL_CACHE/containers.conf
  nofile=$(ulimit -Hn); [ "$nofile" != unlimited ] || nofile=1048576
  nproc=$(ulimit -Hu); [ "$nproc" != unlimited ] || nproc=1048576
  [ "$nproc" -le 32768 ] || nproc=32768
  mkdir -p "$REEL_CACHE"
  # crun refuses this host's hybrid cgroup layout (v1 + a cgroup2 mount with controllers): use runc.
  printf '# written by hack/kind/lib.sh\n[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n[engine]\nruntime = "%s"\n' \
    "$nofile" "$nofile" "$nproc" "$nproc" "$(command -v runc >/dev/null && echo runc || echo crun)" \
    > "$conf.tmp" && mv "$conf.tmp" "$conf"
  export CONTAINERS_CONF=$conf
}
ensure_podman_conf

# The base image our Dockerfiles are built from (their ARG BASE_IMAGE).
default_base_image() { if [ "$(detect_provider)" = podman ]; then echo "$LOCAL_BASE_IMAGE"; else echo "$PUBLIC_BASE_IMAGE"; fi; }

# hold_lock NAME: serialize with other runs of these scripts on this machine (several engineers share
# it); the lock is released when the calling process exits.
hold_lock() {
  mkdir -p "$REEL_CACHE"
  exec {REEL_LOCK_FD}>"$REEL_CACHE/$1.lock"
  if ! flock -n "$REEL_LOCK_FD"; then
    log "waiting for $REEL_CACHE/$1.lock (another run holds it)"
    flock "$REEL_LOCK_FD"
  fi
  # Long-lived processes started below (conmon of the node container, started by `podman run` inside
  # `kind create`) must not inherit the lock's descriptor, or the lock would live as long as the cluster.
  kind() { command kind "$@" {REEL_LOCK_FD}>&-; }
  podman() { command podman "$@" {REEL_LOCK_FD}>&-; }
}
