#!/usr/bin/env bash
# The Reel kind test cluster.
#   tools              build what the provider needs (podman: everything; docker: kind, kubectl, helm)
#   up                 build what is missing, clean leftovers, create (or reuse) the cluster, wait until
#                      it is ready; the last line printed is `export KUBECONFIG=...`
#   netpol-on          NetworkPolicy enforcement on the podman cluster: kube-router's policy controller
#                      (see netpol_on; with docker, kind's kindnetd enforces it always)
#   netpol-off         stop enforcing it: remove kube-router and every iptables rule it made
#   down               delete the cluster, its node container, volumes and podman network
#   images             build the project images (Dockerfile, recorder_image/Dockerfile: those that exist)
#                      and load them into the cluster
#   load-image DOCKERFILE TAG [CONTEXT]
#                      build one Dockerfile (context: the repo root unless given) and load it
#   status             print provider, cluster and kubeconfig state
#   test               up, pytest tests/cluster (teardown checked by its last test), down
# Provider: docker + stock kind node image when a Docker engine answers, else podman + the node image
# built by hack/kind/build.sh. Other scripts may `source` this file to use build_and_load.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_PREFIX=cluster
PROVIDER=$(detect_provider)
PODMAN_NETWORK=${REEL_PODMAN_NETWORK:-$CLUSTER_NAME-kind}
export KIND_EXPERIMENTAL_PROVIDER=$PROVIDER
export KIND_EXPERIMENTAL_PODMAN_NETWORK=$PODMAN_NETWORK
NODE_CONTAINER=$CLUSTER_NAME-control-plane
STATE_FILE=$REEL_CACHE/cluster-$CLUSTER_NAME.state
# project images and the base image their Dockerfiles take as ARG BASE_IMAGE
OPERATOR_IMAGE=${OPERATOR_IMAGE:-localhost/reel-operator:dev}
RECORDER_IMAGE=${RECORDER_IMAGE:-localhost/reel-recorder:dev}
if [ "$PROVIDER" = podman ]; then BASE_IMAGE=${BASE_IMAGE:-$LOCAL_BASE_IMAGE}; CLI=podman
else BASE_IMAGE=${BASE_IMAGE:-$PUBLIC_BASE_IMAGE}; CLI=docker; fi

kctl() { kubectl --kubeconfig "$KUBECONFIG_PATH" "$@"; }
cluster_exists() { kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; }
node_running() { [ "$($CLI inspect -f '{{.State.Running}}' "$NODE_CONTAINER" 2>/dev/null)" = true ]; }
api_ready() { [ -s "$KUBECONFIG_PATH" ] && kctl get --raw /readyz --request-timeout=5s >/dev/null 2>&1; }

# Everything a cluster of this name may have left behind after a crash or an interrupted create.
remove_leftovers() {
  local c v
  # The node is thrown away: kill it rather than wait for systemd to stop every unit (podman's stop
  # timeout is 10 s, which a node with pods exceeds). Killing its init ends every process inside.
  for c in $($CLI ps -q --filter "label=io.x-k8s.kind.cluster=$CLUSTER_NAME"); do
    $CLI kill "$c" >/dev/null 2>&1 || true
  done
  if cluster_exists; then kind delete cluster --name "$CLUSTER_NAME" >&2 || true; fi
  for c in $($CLI ps -aq --filter "label=io.x-k8s.kind.cluster=$CLUSTER_NAME"); do
    $CLI rm -f -v "$c" >/dev/null || true
  done
  if [ -f "$STATE_FILE" ]; then
    for v in $(sed -n 's/^volume=//p' "$STATE_FILE"); do $CLI volume rm -f "$v" >/dev/null 2>&1 || true; done
  fi
  if [ "$PROVIDER" = podman ] && podman network exists "$PODMAN_NETWORK" 2>/dev/null; then
    podman network rm -f "$PODMAN_NETWORK" >/dev/null || true
  fi
  rm -f "$STATE_FILE" "$KUBECONFIG_PATH"
}

ensure_network() {
  [ "$PROVIDER" = podman ] || return 0
  # kind's podman provider bind-mounts /lib/modules; these machines have none (no loadable modules)
  [ -d /lib/modules ] || mkdir -p /lib/modules
  podman network exists "$PODMAN_NETWORK" && return 0
  # Created before kind does, without DNS: no aardvark-dns on the host forwarding to outside resolvers.
  podman network create --driver bridge --disable-dns "$PODMAN_NETWORK" >/dev/null
}

record_state() {
  { echo "provider=$PROVIDER"; echo "network=$PODMAN_NETWORK"; echo "container=$NODE_CONTAINER"
    $CLI inspect -f '{{range .Mounts}}{{if eq .Type "volume"}}volume={{.Name}}{{"\n"}}{{end}}{{end}}' \
      "$NODE_CONTAINER" 2>/dev/null || true
  } > "$STATE_FILE"
}

# In-cluster DNS answers cluster names only: replace kubeadm's Corefile (which forwards everything
# else to the node's resolv.conf) by hack/kind/Corefile, without `forward`.
isolate_coredns() {
  local want have
  want=$(cat "$KIND_DIR/Corefile")
  have=$(kctl -n kube-system get configmap coredns -o jsonpath='{.data.Corefile}')
  if [ "$want" != "$have" ]; then
    log "CoreDNS: installing hack/kind/Corefile (no forwarding outside the cluster)"
    kctl -n kube-system create configmap coredns --from-file=Corefile="$KIND_DIR/Corefile" \
      --dry-run=client -o yaml | kctl -n kube-system replace -f - >/dev/null
    kctl -n kube-system rollout restart deployment/coredns >/dev/null
  fi
}

wait_ready() {
  log "waiting for the node, kube-proxy, CoreDNS and the default service account"
  kctl wait --for=condition=Ready node --all --timeout=300s >/dev/null
  kctl -n kube-system rollout status daemonset/kube-proxy --timeout=300s >/dev/null
  isolate_coredns
  kctl -n kube-system rollout status deployment/coredns --timeout=300s >/dev/null
  kctl -n default wait --for=create serviceaccount/default --timeout=120s >/dev/null
}

# NetworkPolicy enforcement (podman provider; kind's own kindnetd enforces it with docker): the node keeps its
# bridge CNI, and kube-router's network policy controller (hack/kind/netpol/, image built by build.sh) runs as
# a DaemonSet. kindnetd and kube-network-policies are no option here: they need the nftables `queue`
# expression, which these machines' kernel lacks (CONFIG_NFT_QUEUE). The image is loaded only when the node
# does not have this very build of it.
# Only on request (netpol-on; `up` with REEL_KIND_NETPOL=1), not always: kube-router ACCEPTs every pod's
# packets that pass its policies at the top of FORWARD/OUTPUT, before kube-proxy's iptables rules that REJECT
# connections to a Service without endpoints; with it, such a connection hangs instead of being refused (the
# e2e tests that take a store down that way then fail).
netpol_on() {
  [ "$PROVIDER" = podman ] || return 0
  local want have
  want=sha256:$(podman image inspect --format '{{.Id}}' "$NETPOL_IMAGE")
  have=$(podman exec "$NODE_CONTAINER" crictl inspecti -o go-template --template '{{.status.id}}' \
         "$NETPOL_IMAGE" 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    log "NetworkPolicy: loading $NETPOL_IMAGE"
    kind load image-archive "$NETPOL_ARCHIVE" --name "$CLUSTER_NAME" >&2
    kctl -n kube-system delete pod -l k8s-app=kube-router --ignore-not-found >/dev/null
  fi
  kctl apply -f "$KIND_DIR/netpol/kube-router.yaml" >/dev/null
  kctl -n kube-system rollout status daemonset/kube-router --timeout=180s >/dev/null
  log "NetworkPolicy: enforced by kube-router"
}

# netpol_off: kube-router gone, then its rules: the jumps from INPUT/FORWARD/OUTPUT (comment "kube-router
# netpol") and its chains KUBE-ROUTER-*, KUBE-POD-FW-*, KUBE-NWPLCY-* (flushed first: they jump to each other).
# Its ipsets stay (no rule uses them; a later netpol_on reuses them).
netpol_off() {
  [ "$PROVIDER" = podman ] || return 0
  kctl delete -f "$KIND_DIR/netpol/kube-router.yaml" --ignore-not-found --wait >/dev/null
  kctl -n kube-system wait --for=delete pod -l k8s-app=kube-router --timeout=120s >/dev/null 2>&1 || true
  podman exec "$NODE_CONTAINER" sh -euc '
    for c in INPUT FORWARD OUTPUT; do
      iptables -w -S "$c" | grep -e "kube-router netpol" | sed "s/^-A /-D /" | while read -r rule; do
        eval "iptables -w $rule"; done
    done
    chains=$(iptables -w -S | sed -n "s/^-N \(KUBE-ROUTER-[^ ]*\|KUBE-POD-FW-[^ ]*\|KUBE-NWPLCY-[^ ]*\)$/\1/p")
    for c in $chains; do iptables -w -F "$c"; done
    for c in $chains; do iptables -w -X "$c"; done
    ! iptables-save | grep -q -e KUBE-ROUTER -e KUBE-POD-FW -e KUBE-NWPLCY -e "kube-router netpol"' \
    || die "NetworkPolicy: kube-router rules are left in the node"
  log "NetworkPolicy: not enforced (kube-router and its rules removed)"
}

cmd_up() {
  local t0=$SECONDS
  cmd_tools
  if cluster_exists && node_running && api_ready; then
    log "cluster $CLUSTER_NAME is running ($PROVIDER): reusing it"
  else
    log "provider $PROVIDER: creating cluster $CLUSTER_NAME"
    remove_leftovers
    ensure_network
    local args=(--name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG_PATH" --wait 0s
                --config "$KIND_DIR/kind-config.$PROVIDER.yaml")
    [ "$PROVIDER" != podman ] || args+=(--image "$NODE_IMAGE")
    if ! kind create cluster "${args[@]}" >&2; then
      log "kind create failed; removing what it left"
      remove_leftovers
      exit 1
    fi
    record_state
  fi
  kind export kubeconfig --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG_PATH" >/dev/null 2>&1
  wait_ready
  [ "${REEL_KIND_NETPOL:-0}" != 1 ] || netpol_on
  log "cluster $CLUSTER_NAME ready in $((SECONDS - t0)) s"
  echo "export KUBECONFIG=$KUBECONFIG_PATH"
}

cmd_tools() {
  if [ "$PROVIDER" = podman ]; then "$KIND_DIR/build.sh" all; else "$KIND_DIR/build.sh" tools; fi
}

cmd_down() {
  log "deleting cluster $CLUSTER_NAME ($PROVIDER)"
  remove_leftovers
}

# build_and_load DOCKERFILE TAG [CONTEXT]: build with the provider's CLI (host network: podman's
# default network hangs in apt-get here) from the given base image, then load into the cluster.
build_and_load() {
  local dockerfile=$1 tag=$2 context=${3:-$REPO_DIR} archive
  log "building $tag from $dockerfile (BASE_IMAGE=$BASE_IMAGE)"
  if [ "$PROVIDER" = podman ]; then
    podman build --network=host --pull=never --build-arg "BASE_IMAGE=$BASE_IMAGE" \
      -f "$dockerfile" -t "$tag" "$context" >&2
    mkdir -p "$IMG_DIR"
    archive=$IMG_DIR/load-$(echo "$tag" | tr '/:' '__').tar
    rm -f "$archive"
    podman save -q --format docker-archive -o "$archive" "$tag"
    kind load image-archive "$archive" --name "$CLUSTER_NAME" >&2
    rm -f "$archive"
  else
    docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" -f "$dockerfile" -t "$tag" "$context" >&2
    kind load docker-image "$tag" --name "$CLUSTER_NAME" >&2
  fi
  log "loaded $tag into cluster $CLUSTER_NAME"
}

cmd_images() {
  cluster_exists || die "no cluster $CLUSTER_NAME: run make cluster-up first"
  [ "$PROVIDER" != podman ] || "$KIND_DIR/build.sh" base-image
  local built=0
  if [ -f "$REPO_DIR/Dockerfile" ]; then build_and_load "$REPO_DIR/Dockerfile" "$OPERATOR_IMAGE"; built=1; fi
  if [ -f "$REPO_DIR/recorder_image/Dockerfile" ]; then
    build_and_load "$REPO_DIR/recorder_image/Dockerfile" "$RECORDER_IMAGE"; built=1
  fi
  [ $built = 1 ] || log "no Dockerfile or recorder_image/Dockerfile yet: nothing to build"
}

cmd_status() {
  echo "provider=$PROVIDER cluster=$CLUSTER_NAME node_image=$([ "$PROVIDER" = podman ] && echo "$NODE_IMAGE" || echo kind-default)"
  echo "exists=$(cluster_exists && echo yes || echo no) running=$(node_running && echo yes || echo no) api=$(api_ready && echo ready || echo no)"
  echo "kubeconfig=$KUBECONFIG_PATH base_image=$BASE_IMAGE"
}

# cmd_test: what `make test-cluster` runs: up, the end-to-end suite and the cluster tests, in that order
# (REEL_REQUIRE_CLUSTER: they fail rather
# than skip; REEL_CLUSTER_TEARDOWN: the last one runs `make cluster-down` and checks nothing is left),
# then down again in case a test failed before. Each step is a separate process: `down`, called by the
# teardown test, needs the cluster lock that `up` held.
cmd_test() {
  hold_lock "test-$CLUSTER_NAME"
  "$0" up
  local rc=0
  REEL_REQUIRE_CLUSTER=1 REEL_CLUSTER_TEARDOWN=1 KUBECONFIG=$KUBECONFIG_PATH \
    "${PYTHON:-python3}" -m pytest "$REPO_DIR/tests/e2e" "$REPO_DIR/tests/cluster" -m cluster || rc=$?
  "$0" down
  return $rc
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    test) cmd_test; exit ;;
  esac
  hold_lock "cluster-$CLUSTER_NAME"
  case "${1:-}" in
    tools) cmd_tools ;;
    up) cmd_up ;;
    down) cmd_down ;;
    images) cmd_images ;;
    load-image) shift; [ $# -ge 2 ] || die "usage: $0 load-image DOCKERFILE TAG [CONTEXT]"; build_and_load "$@" ;;
    status) cmd_status ;;
    netpol-on) netpol_on ;;
    netpol-off) netpol_off ;;
    *) die "usage: $0 test|tools|up|down|images|load-image DOCKERFILE TAG [CONTEXT]|status|netpol-on|netpol-off" ;;
  esac
fi
