// Package pluginv1 is the Go code protoc generates from
// plugins/native/proto/sluice/plugin/v1/plugin.proto: the messages and the
// gRPC client and server of the native plugin protocol, version 1. Do not
// edit the .pb.go files; change the .proto and run plugins/native/gen.sh.
package pluginv1
