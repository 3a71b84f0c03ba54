#!/usr/bin/env bash
# Builds a nats-server image FROM scratch out of the local nats-server binary and the shared libraries
# `ldd` names, for machines that cannot pull the official `nats` image. Prints the image name.
#   bash scripts/nats-image.sh [tag]        (default tag: local/nats:<version of the local binary>)
# Then: RICOCHET_NATS_IMAGE=<that tag> npm test   (or startNats({ image: "<that tag>" }))
set -euo pipefail
binary="$(command -v nats-server)" || { echo "nats-server is not on PATH" >&2; exit 1; }
version="$("$binary" --version | sed -n 's/.*v\([0-9][0-9.]*\).*/\1/p')"
tag="${1:-local/nats:${version}}"
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$binary" "$context/nats-server"
{
  echo "FROM scratch"
  # Every library the binary links against, at the path the loader expects it.
  ldd "$binary" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
    mkdir -p "$context/root$(dirname "$lib")"
    cp -L "$lib" "$context/root$lib"
    echo "COPY root$lib $lib"
  done
  echo "COPY nats-server /nats-server"
  echo 'ENTRYPOINT ["/nats-server"]'
  echo 'CMD ["-js"]'
} > "$context/Dockerfile"
docker build -q -t "$tag" "$context" >/dev/null
echo "$tag"
