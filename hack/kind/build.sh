#!/usr/bin/env bash
# Builds the kind test cluster's pieces into $REEL_CACHE (default ~/.cache/reel), outside the repo:
#   tools       Go programs from pinned upstream sources -> $REEL_CACHE/bin (Kubernetes v1.37.2,
#               etcd, CoreDNS, crictl, kind, helm; one wrapper module each under hack/kind/modules)
#   root-image  localhost/reel-debootstrap:bookworm: `debootstrap --variant=minbase bookworm`
#   base-image  localhost/reel-base:bookworm: the root + Python 3.11, base of our Dockerfiles here
#   cp-images   control-plane images under the names kubeadm lists -> $REEL_CACHE/images/*.tar
#   node-image  localhost/reel-kind-node:v1.37.2 with the control-plane images preloaded
#   netpol-image  localhost/reel-kube-router:v2.1.0 (NetworkPolicy enforcement, hack/kind/netpol/)
#               -> $REEL_CACHE/images/kube-router-v2.1.0.tar; `cluster.sh netpol-on` loads and runs it
#   all         everything above (default); `images` = everything but tools
#   kwok        $REEL_CACHE/bin/kwok (kwok v0.8.0, fake nodes): for `make bench-scale` only, not in `all`
# Every piece is skipped when it exists and was built from the same inputs (a hash of the inputs is
# kept in $REEL_CACHE/stamps and, for images, in the image label reel.inputs).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
LOG_PREFIX=build
WORK=$REEL_CACHE/work

# ---------------------------------------------------------------- Go programs
# go_module_hash NAME EXTRA: a wrapper module's go.mod/go.sum + Go toolchain + build flags.
go_module_hash() {
  { hash_inputs "$KIND_DIR/modules/$1"; go version; printf '%s\n' "${2:-}"; } | sha256sum | cut -d' ' -f1
}

# build_module NAME LDFLAGS BINARY...: go build the `tool` packages of a wrapper module into BIN_DIR.
build_module() {
  local name=$1 ldflags=$2; shift 2
  local h b missing=0 t0=$SECONDS pkgs
  h=$(go_module_hash "$name" "$ldflags")
  for b in "$@"; do [ -x "$BIN_DIR/$b" ] || missing=1; done
  if [ $missing = 0 ] && stamp_ok "go-$name" "$h"; then log "$name: up to date"; return; fi
  log "$name: building $* ($(go env GOVERSION))"
  mkdir -p "$BIN_DIR"
  pkgs=$(cd "$KIND_DIR/modules/$name" && go list tool)
  # one package: name the binary (go.etcd.io/etcd/server/v3 would become "server"); several: by package
  local out=$BIN_DIR/; [ "$(wc -w <<<"$pkgs")" != 1 ] || out=$BIN_DIR/$1
  # shellcheck disable=SC2086
  (cd "$KIND_DIR/modules/$name" &&
    CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -ldflags "-s -w $ldflags" -o "$out" $pkgs)
  for b in "$@"; do [ -x "$BIN_DIR/$b" ] || die "$name: $b was not built"; done
  stamp_set "go-$name" "$h"
  log "$name: built in $((SECONDS - t0)) s"
}

build_tools() {
  local v=$K8S_VERSION major minor kv=() pkg key
  major=${v#v}; major=${major%%.*}; minor=${v#v"$major".}; minor=${minor%%.*}
  # what Kubernetes' hack/lib/version.sh stamps; without it the server reports v0.0.0-master+$Format
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    for key in gitVersion=$v gitMajor=$major gitMinor=$minor gitTreeState=clean \
               buildDate=1970-01-01T00:00:00Z; do
      kv+=("-X $pkg.$key")
    done
  done
  build_module kubernetes "${kv[*]}" kubeadm kubelet kubectl kube-apiserver kube-controller-manager \
    kube-scheduler kube-proxy
  build_module etcd "-X go.etcd.io/etcd/api/v3/version.GitSHA=v3.7.0" etcd
  build_module coredns "" coredns
  build_module crictl "-X sigs.k8s.io/cri-tools/pkg/version.Version=v1.37.0" crictl
  build_module kind "" kind
  build_module helm "-X helm.sh/helm/v3/internal/version.version=v3.22.0" helm
  build_module kube-router "-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=v2.1.0" kube-router
}

# kwok (fake nodes for benchmarks/operator_scale.py): only on demand, `build.sh kwok`, not part of `all`
build_kwok() { build_module kwok "" kwok; }

# ---------------------------------------------------------------- images
image_label() { podman image inspect --format '{{index .Labels "reel.inputs"}}' "$1" 2>/dev/null || true; }
image_ok() { [ "$(image_label "$1")" = "$2" ]; }
image_id() { podman image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
# drop_old_image ID: remove the image a rebuild replaced, if nothing else uses it any more
drop_old_image() { [ -z "$1" ] || podman rmi "$1" >/dev/null 2>&1 || true; }
# podman needs ulimits within this host's hard limits (lib.sh points CONTAINERS_CONF at our file).
pbuild() { podman build --network=host --pull=never "$@"; }

build_root_image() {
  local img=localhost/reel-debootstrap:bookworm h
  h=$({ printf 'bookworm minbase %s\n' "$DEBIAN_MIRROR"; declare -f build_root_image; } | sha256sum | cut -d' ' -f1)
  ROOT_HASH=$h
  if image_ok "$img" "$h"; then log "root image: up to date"; return; fi
  command -v debootstrap >/dev/null || die "debootstrap is missing (hack/deps.sh installs it)"
  log "root image: debootstrap --variant=minbase bookworm"
  local t0=$SECONDS dir=$WORK/debootstrap old; old=$(image_id "$img")
  rm -rf "$dir"; mkdir -p "$dir"
  debootstrap --variant=minbase bookworm "$dir" "$DEBIAN_MIRROR" > "$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar -C "$dir" --numeric-owner -c . | podman import -q --change "LABEL reel.inputs=$h" \
    --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$img" >/dev/null
  rm -rf "$dir"
  drop_old_image "$old"
  log "root image: built in $((SECONDS - t0)) s"
}

build_base_image() {
  local h ctx=$WORK/ctx-base ca
  rm -rf "$ctx"; mkdir -p "$ctx/local-ca"; touch "$ctx/local-ca/.keep"
  cp "$KIND_DIR/base/Containerfile" "$ctx/"
  for ca in /usr/local/share/ca-certificates/*.crt; do [ ! -f "$ca" ] || cp "$ca" "$ctx/local-ca/"; done
  h=$({ echo "$ROOT_HASH"; hash_inputs "$ctx"; declare -f build_base_image; } | sha256sum | cut -d' ' -f1)
  if image_ok "$LOCAL_BASE_IMAGE" "$h"; then log "base image: up to date"; rm -rf "$ctx"; return; fi
  local t0=$SECONDS old; old=$(image_id "$LOCAL_BASE_IMAGE")
  log "base image: building $LOCAL_BASE_IMAGE"
  pbuild -q --label "reel.inputs=$h" -t "$LOCAL_BASE_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
  drop_old_image "$old"
  log "base image: built in $((SECONDS - t0)) s"
}

# Binaries are copied (hard-linked) into a build context: podman build cannot see outside of it.
stage_bins() { mkdir -p "$1/bin"; local b; for b in "${@:2}"; do ln -f "$BIN_DIR/$b" "$1/bin/$b" 2>/dev/null || cp "$BIN_DIR/$b" "$1/bin/$b"; done; }

# static_image NAME BINARY ENTRYPOINT_JSON: FROM-scratch image with one static binary.
static_image() {
  local name=$1 bin=$2 entry=$3 dir=$WORK/img-$2
  rm -rf "$dir"; mkdir -p "$dir/usr/local/bin" "$dir/etc" "$dir/tmp" "$dir/var/run"
  chmod 1777 "$dir/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$dir/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\nnonroot:x:65532:\n' > "$dir/etc/group"
  printf 'hosts: files dns\n' > "$dir/etc/nsswitch.conf"
  cp "$BIN_DIR/$bin" "$dir/usr/local/bin/$bin"
  [ "$bin" != coredns ] || ln -s usr/local/bin/coredns "$dir/coredns"
  tar -C "$dir" --numeric-owner --owner=0 --group=0 -c . | podman import -q \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENTRYPOINT $entry" --change "LABEL reel.inputs=$CP_HASH" - "$name" >/dev/null
  rm -rf "$dir"
}

CP_ARCHIVE=$IMG_DIR/control-plane-$K8S_VERSION.tar
CP_IMAGES=()
build_cp_images() {
  local r=registry.k8s.io v=$K8S_VERSION
  CP_IMAGES=("$r/kube-apiserver:$v" "$r/kube-controller-manager:$v" "$r/kube-scheduler:$v"
             "$r/kube-proxy:$v" "$r/etcd:$ETCD_IMAGE_TAG" "$r/coredns/coredns:$COREDNS_IMAGE_TAG")
  local t; for t in $PAUSE_TAGS; do CP_IMAGES+=("$r/pause:$t"); done
  CP_HASH=$({ echo "$ROOT_HASH"; cat "$STAMP_DIR"/go-kubernetes "$STAMP_DIR"/go-etcd "$STAMP_DIR"/go-coredns
              sha256sum < /usr/bin/catatonit; hash_inputs "$KIND_DIR/images"
              declare -f build_cp_images static_image stage_bins; echo "$K8S_VERSION $ETCD_IMAGE_TAG $COREDNS_IMAGE_TAG $PAUSE_TAGS"
            } | sha256sum | cut -d' ' -f1)
  if [ -s "$CP_ARCHIVE" ] && stamp_ok cp-images "$CP_HASH"; then log "control-plane images: up to date"; return; fi
  local t0=$SECONDS b
  log "control-plane images: building ${CP_IMAGES[*]}"
  mkdir -p "$WORK" "$IMG_DIR"
  podman rmi -f "${CP_IMAGES[@]}" >/dev/null 2>&1 || true   # the previous build's, if any
  for b in kube-apiserver kube-controller-manager kube-scheduler; do
    static_image "$r/$b:$v" "$b" "[\"/usr/local/bin/$b\"]"
  done
  static_image "$r/etcd:$ETCD_IMAGE_TAG" etcd '["/usr/local/bin/etcd"]'
  static_image "$r/coredns/coredns:$COREDNS_IMAGE_TAG" coredns '["/coredns"]'
  # pause: Debian's static catatonit in pause mode
  local pdir=$WORK/img-pause first=""
  rm -rf "$pdir"; mkdir -p "$pdir"; cp /usr/bin/catatonit "$pdir/pause"
  for t in $PAUSE_TAGS; do
    if [ -z "$first" ]; then
      tar -C "$pdir" --owner=0 --group=0 -c pause | podman import -q --change 'ENTRYPOINT ["/pause", "-P"]' \
        --change "LABEL reel.inputs=$CP_HASH" - "$r/pause:$t" >/dev/null
      first=$r/pause:$t
    else podman tag "$first" "$r/pause:$t"; fi
  done
  rm -rf "$pdir"
  local kdir=$WORK/ctx-kube-proxy
  rm -rf "$kdir"; mkdir -p "$kdir"; stage_bins "$kdir" kube-proxy
  pbuild -q --label "reel.inputs=$CP_HASH" -f "$KIND_DIR/images/kube-proxy.Containerfile" \
    -t "$r/kube-proxy:$v" "$kdir" >/dev/null
  rm -rf "$kdir"
  rm -f "$CP_ARCHIVE.tmp"
  podman save -q --multi-image-archive --format docker-archive -o "$CP_ARCHIVE.tmp" "${CP_IMAGES[@]}"
  mv "$CP_ARCHIVE.tmp" "$CP_ARCHIVE"
  stamp_set cp-images "$CP_HASH"
  log "control-plane images: built in $((SECONDS - t0)) s ($(du -m "$CP_ARCHIVE" | cut -f1) MB archive)"
}

build_node_image() {
  local h stage1=localhost/reel-kind-node-stage1:$K8S_VERSION ctr_name=reel-node-image-build
  h=$({ echo "$CP_HASH"; cat "$STAMP_DIR"/go-crictl; hash_inputs "$KIND_DIR/node"; declare -f build_node_image; } | sha256sum | cut -d' ' -f1)
  if image_ok "$NODE_IMAGE" "$h"; then log "node image: up to date"; return; fi
  local t0=$SECONDS ctx=$WORK/ctx-node old; old=$(image_id "$NODE_IMAGE")
  log "node image: building $NODE_IMAGE"
  rm -rf "$ctx"; mkdir -p "$ctx"
  cp -a "$KIND_DIR/node/files" "$ctx/files"
  stage_bins "$ctx" kubeadm kubelet kubectl crictl
  local old1; old1=$(image_id "$stage1")
  pbuild -q -f "$KIND_DIR/node/Containerfile" -t "$stage1" "$ctx" >/dev/null
  [ "$old1" = "$(image_id "$stage1")" ] || drop_old_image "$old1"
  rm -rf "$ctx"
  # Preload: start the node's own containerd (not as a service, no systemd) in a throwaway container,
  # import the control-plane archive into the k8s.io namespace, stop containerd, commit the result.
  podman rm -f "$ctr_name" >/dev/null 2>&1 || true
  podman run --name "$ctr_name" --network=none --entrypoint /bin/bash \
    -v "$CP_ARCHIVE:/preload.tar:ro" "$stage1" -euc '
      containerd >/tmp/containerd.log 2>&1 & pid=$!
      for _ in $(seq 300); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done
      ctr -n k8s.io images import --all-platforms --no-unpack /preload.tar >/dev/null
      ctr -n k8s.io images ls -q
      kill $pid; wait $pid || true
      rm -rf /tmp/* /run/containerd' >&2 \
    || { podman rm -f "$ctr_name" >/dev/null; die "node image: preloading images failed"; }
  podman commit -q \
    --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []' \
    --change 'STOPSIGNAL SIGRTMIN+3' --change 'ENV container=podman' \
    --change "LABEL reel.inputs=$h" "$ctr_name" "$NODE_IMAGE" >/dev/null
  podman rm -f "$ctr_name" >/dev/null
  drop_old_image "$old"
  log "node image: built in $((SECONDS - t0)) s ($(podman image inspect --format '{{.Size}}' "$NODE_IMAGE" | awk '{printf "%d MB", $1/1e6}'))"
}

# NetworkPolicy enforcement for the podman cluster: kube-router's policy controller in an image of its
# own (not in the node image: cluster.sh netpol-on loads the archive and applies hack/kind/netpol/kube-router.yaml).
build_netpol_image() {
  local h ctx=$WORK/ctx-kube-router
  h=$({ echo "$ROOT_HASH"; cat "$STAMP_DIR"/go-kube-router; hash_inputs "$KIND_DIR/netpol/Containerfile"
        declare -f build_netpol_image; } | sha256sum | cut -d' ' -f1)
  if [ -s "$NETPOL_ARCHIVE" ] && image_ok "$NETPOL_IMAGE" "$h"; then log "kube-router image: up to date"; return; fi
  local t0=$SECONDS old; old=$(image_id "$NETPOL_IMAGE")
  log "kube-router image: building $NETPOL_IMAGE"
  rm -rf "$ctx"; mkdir -p "$ctx" "$IMG_DIR"; stage_bins "$ctx" kube-router
  pbuild -q --label "reel.inputs=$h" -f "$KIND_DIR/netpol/Containerfile" -t "$NETPOL_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
  [ "$old" = "$(image_id "$NETPOL_IMAGE")" ] || drop_old_image "$old"
  rm -f "$NETPOL_ARCHIVE.tmp"
  podman save -q --format docker-archive -o "$NETPOL_ARCHIVE.tmp" "$NETPOL_IMAGE"
  mv "$NETPOL_ARCHIVE.tmp" "$NETPOL_ARCHIVE"
  log "kube-router image: built in $((SECONDS - t0)) s"
}

build_images() {
  build_root_image
  build_base_image
  build_cp_images
  build_node_image
  build_netpol_image
}

hold_lock build
case "${1:-all}" in
  tools) build_tools ;;
  root-image) build_root_image ;;
  base-image) build_root_image; build_base_image ;;
  cp-images) build_root_image; build_cp_images ;;
  node-image|images) build_tools; build_images ;;
  all) build_tools; build_images ;;
  netpol-image) build_tools; build_root_image; build_netpol_image ;;
  kwok) build_kwok ;;
  *) die "usage: $0 [all|tools|root-image|base-image|cp-images|node-image|netpol-image|kwok]" ;;
esac
