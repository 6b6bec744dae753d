// Command badcookie is a go-plugin plugin of another product: it serves
// the Sluice protocol but expects another magic cookie, so it refuses to
// run under the agent.
package main

import (
	"github.com/hashicorp/go-plugin"

	"github.com/sluice-dev/sluice/plugins/native"
)

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: plugin.HandshakeConfig{ProtocolVersion: native.ProtocolVersion, MagicCookieKey: "OTHER_PRODUCT_PLUGIN", MagicCookieValue: "other"},
		Plugins:         plugin.PluginSet{native.PluginName: &native.GRPCPlugin{Impl: native.NewServer(native.Plugin{ProcessMessage: nil})}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}
