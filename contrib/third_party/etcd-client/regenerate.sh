#!/bin/sh
# Regenerates src/rpc/generated/*.rs from proto/ with tonic-prost-build.
# Run it after updating proto/ (or this crate) from upstream etcd-client;
# it needs a protoc (Debian: protobuf-compiler; or PROTOC=/path/to/protoc).
# The satchel build itself never runs it: the generated code is checked in.
set -eu
cd "$(dirname "$0")"
cargo run --quiet --manifest-path codegen/Cargo.toml
echo "regenerated: $(ls src/rpc/generated)"
