#!/usr/bin/env bash
# make images: the two images (images/*/Dockerfile) built on this machine with no
# registry and no Docker engine.
#
#   1. Debian's buildah, runc, umoci and debootstrap, installed with apt-get if missing.
#   2. A base made from Debian's packages: debootstrap (minbase) of the release this
#      machine runs, with its python3 and ca-certificates, trimmed (no apt lists or .debs,
#      docs, man pages or translations): .cache/images/base/<release>.tar, made once
#      (`rm -rf .cache/images/base` makes it anew), committed as localhost/ferry-base:<release>.
#   3. Each image built by buildah with BASE=localhost/ferry-base:<release> and the layer
#      cache (--layers: the builder stage and the locked dependencies are built once and
#      shared by both images, until a lock file or the base changes).
#   4. Each image also written as an OCI image layout, .cache/images/oci/<image>, which
#      tests/e2e/test_images_run.py unpacks with umoci and runs with runc.
#
# Everything buildah keeps lives under .cache/images: --root, --runroot, TMPDIR, and its
# blob-info cache, which containers/image writes to /var/lib/containers/cache for root
# whatever the flags say: buildah runs in a private mount namespace where that directory
# is .cache/images/var-lib-containers (and its overlay mounts end with the namespace).
# The Python dependencies come from the hashed lock files images/*.lock (`make lock`).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CACHE=$ROOT/.cache/images
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
SUITE=$(. /etc/os-release && echo "${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}")
BASE_IMAGE=localhost/ferry-base:$SUITE
BASE_TAR=$CACHE/base/$SUITE.tar
IMAGES=(ferry-worker ferry-operator)

log() { echo ">> $*"; }

if [ "${1:-}" != --in-namespace ]; then
  [ "$(id -u)" = 0 ] || { echo "error: make images runs as root (debootstrap, buildah's storage, mounts)"; exit 1; }
  # 1. Tools.
  missing=()
  for tool in buildah runc umoci debootstrap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  command -v unshare >/dev/null || missing+=(util-linux)
  if ((${#missing[@]})); then
    command -v apt-get >/dev/null || { echo "error: missing ${missing[*]} and no apt-get"; exit 1; }
    log "installing Debian's ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
  mkdir -p "$CACHE"/{storage,run,tmp,base,oci,var-lib-containers}

  # 2. The base's root filesystem, from the mirror this machine's apt uses for its release.
  if [ ! -s "$BASE_TAR" ]; then
    mirror=$(apt-get indextargets --format '$(SITE) $(RELEASE)' 'Identifier: Packages' \
             | awk -v s="$SUITE" '$2 == s { print $1; exit }')
    [ -n "$mirror" ] || { echo "error: no apt source for $SUITE to debootstrap from"; exit 1; }
    rootfs=$CACHE/base/rootfs
    rm -rf "$rootfs"
    log "debootstrap $SUITE (minbase, python3, ca-certificates) into $rootfs"
    debootstrap --variant=minbase --include=python3,ca-certificates \
      "$SUITE" "$rootfs" "$mirror" >"$CACHE/base/debootstrap.log" 2>&1 \
      || { tail -20 "$CACHE/base/debootstrap.log"; exit 1; }
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
           "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log \
           "$rootfs"/var/cache/debconf/*-old "$rootfs"/dev/* "$rootfs"/proc/* "$rootfs"/sys/*
    tar --numeric-owner -C "$rootfs" -cf "$BASE_TAR.tmp" .
    mv "$BASE_TAR.tmp" "$BASE_TAR"
    rm -rf "$rootfs"
  fi

  # 3. The build context: only what the Dockerfiles copy (their .dockerignore, spelled out).
  context=$CACHE/context
  rm -rf "$context"
  mkdir -p "$context/images"
  cp pyproject.toml setup.py README.md "$context/"
  cp images/requirements.lock images/build-requirements.lock "$context/images/"
  tar -C "$ROOT" --exclude=__pycache__ --exclude='*.pyc' --exclude='*.so' \
    --exclude='*.egg-info' -cf - operator | tar -C "$context" -xf -

  exec unshare --mount --propagation private -- bash "$0" --in-namespace
fi

# In the private mount namespace: /var/lib is an empty tmpfs here (buildah needs nothing
# of it), with the cache's directory as /var/lib/containers.
mount -t tmpfs -o mode=755 ferry-images /var/lib
mkdir /var/lib/containers
mount --bind "$CACHE/var-lib-containers" /var/lib/containers

export TMPDIR=$CACHE/tmp
export BUILDAH_ISOLATION=chroot
# overlay needs a kernel and filesystem that allow it (ext4 here); vfs works anywhere.
DRIVER=${FERRY_STORAGE_DRIVER:-overlay}
bh() { buildah --root "$CACHE/storage" --runroot "$CACHE/run" --storage-driver "$DRIVER" "$@"; }

# The layer cache grows by a few hundred MB each time operator/ changes: past a cap,
# start the storage anew (the base is committed again from its tarball in seconds).
if [ "$(du -sm "$CACHE/storage" | cut -f1)" -gt "${FERRY_IMAGES_STORAGE_CAP_MB:-6144}" ]; then
  log "image storage past its cap: starting it anew"
  bh rm --all >/dev/null 2>&1 || true
  bh rmi --all --force >/dev/null 2>&1 || true
fi

if ! bh inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
  log "committing $BASE_IMAGE"
  ctr=$(bh from scratch)
  bh add --quiet "$ctr" "$BASE_TAR" / >/dev/null
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 \
    --label org.opencontainers.image.description="Debian $SUITE minbase with python3 (debootstrap)" \
    "$ctr"
  bh commit --rm --quiet "$ctr" "$BASE_IMAGE" >/dev/null
fi

# The RUN steps trust what this machine trusts: its CA bundle (which may hold a TLS
# proxy's CA in front of the package registries) is mounted over the base's for the
# build only; it is in no layer.
ca_bundle=${FERRY_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
for image in "${IMAGES[@]}"; do
  log "building localhost/$image:$VERSION"
  old=$(bh inspect --type image --format '{{.FromImageID}}' "localhost/$image:$VERSION" \
        2>/dev/null || true)
  bh build --quiet --layers --pull=never --network host \
    --volume "$ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro" \
    --build-arg BASE="$BASE_IMAGE" \
    -f "$ROOT/images/$image/Dockerfile" -t "localhost/$image:$VERSION" "$CACHE/context" \
    >/dev/null
  new=$(bh inspect --type image --format '{{.FromImageID}}' "localhost/$image:$VERSION")
  # 4. The OCI layout the e2e test runs (written anew, one image in it; not when the
  # build changed nothing).
  if [ "$(cat "$CACHE/oci/$image.id" 2>/dev/null)" != "$new" ] \
     || [ ! -s "$CACHE/oci/$image/index.json" ]; then
    rm -rf "$CACHE/oci/$image" "$CACHE/oci/$image.id"
    bh push --quiet "localhost/$image:$VERSION" "oci:$CACHE/oci/$image:$VERSION"
    echo "$new" >"$CACHE/oci/$image.id"
  fi
  # The image this build replaced, now untagged (its cached layers stay).
  if [ -n "$old" ] && [ "$old" != "$new" ]; then bh rmi "$old" >/dev/null 2>&1 || true; fi
done

bh images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep -E 'ferry-(base|worker|operator)' \
  | sed 's/^/   /'
