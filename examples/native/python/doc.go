// Package python holds plugin.py, a native plugin written in Python with
// grpcio and protoc's generated messages, and the test that runs it
// through the agent's grpc_plugin processor. See README.md.
package python
