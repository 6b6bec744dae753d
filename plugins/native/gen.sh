#!/usr/bin/env bash
# Regenerates plugins/native/pluginv1 from proto/sluice/plugin/v1/plugin.proto.
#
#   bash plugins/native/gen.sh        (or: go generate ./plugins/native)
#
# The output is byte-for-byte reproducible because every tool is pinned:
# protoc is Debian 12's protobuf-compiler (its version is written into the
# generated header, so another protoc is refused rather than producing a
# diff), and the two Go plugins are installed at fixed versions from the Go
# module proxy into a temporary directory. CI runs this and then
# `git diff --exit-code -- plugins/native/pluginv1`.
set -euo pipefail
cd "$(dirname "$0")"

PROTOC_WANT="libprotoc 3.21.12"
PROTOC_GEN_GO="google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12"
PROTOC_GEN_GO_GRPC="google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1"
MODULE="github.com/sluice-dev/sluice/plugins/native"

if ! command -v protoc >/dev/null; then
	echo "gen.sh: protoc not found: install Debian's protobuf-compiler (apt-get install -y protobuf-compiler)" >&2
	exit 1
fi
if [ "$(protoc --version)" != "$PROTOC_WANT" ]; then
	echo "gen.sh: protoc is '$(protoc --version)', want '$PROTOC_WANT' (Debian 12's protobuf-compiler): another version writes another header" >&2
	exit 1
fi

tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
GOBIN="$tools" go install "$PROTOC_GEN_GO"
GOBIN="$tools" go install "$PROTOC_GEN_GO_GRPC"

rm -f pluginv1/*.pb.go
protoc -I proto \
	--plugin=protoc-gen-go="$tools/protoc-gen-go" \
	--plugin=protoc-gen-go-grpc="$tools/protoc-gen-go-grpc" \
	--go_out=. --go_opt=module="$MODULE" \
	--go-grpc_out=. --go-grpc_opt=module="$MODULE" \
	sluice/plugin/v1/plugin.proto
