// Package config holds the agent's own configuration: where it keeps its
// state, which pipelines it runs, how it logs and how long it waits on
// shutdown. It is not the pipelines' configuration; those are Benthos YAML
// files that the agent only names here.
//
// The effective configuration is layered, each layer overriding the one
// before: built-in defaults, then a YAML file (named by -c/--config or
// SLUICE_CONFIG), then SLUICE_* environment variables, then command-line
// flags the user actually set. Every layer is checked strictly, because a
// misspelt key that is silently ignored leaves the agent running with a
// setting the operator believes they changed. All problems are collected and
// reported together, each naming the key and where the bad value came from,
// so a broken deployment is fixed in one round trip rather than one error at
// a time.
package config
