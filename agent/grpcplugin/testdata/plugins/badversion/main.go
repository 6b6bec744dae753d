// Command badversion is a native plugin built for protocol version 2,
// which this agent does not speak.
package main

import (
	"github.com/hashicorp/go-plugin"

	"github.com/sluice-dev/sluice/plugins/native"
)

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: plugin.HandshakeConfig{ProtocolVersion: 2, MagicCookieKey: native.MagicCookieKey, MagicCookieValue: native.MagicCookieValue},
		Plugins:         plugin.PluginSet{native.PluginName: &native.GRPCPlugin{Impl: native.NewServer(native.Plugin{})}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}
