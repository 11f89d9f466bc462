#!/bin/sh
# Builds a static huddle binary: the one build line the Dockerfile and the
# tests share. Usage: scripts/build.sh OUTPUT [PACKAGE]
set -eu
out="${1:?usage: scripts/build.sh OUTPUT [PACKAGE]}"
pkg="${2:-./cmd/huddle}"
version="${HUDDLE_VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo devel)}"
CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X github.com/huddle-rtc/huddle/internal/app.version=${version}" \
  -o "$out" "$pkg"
