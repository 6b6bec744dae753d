// Package deploycheck tests the deployment files under deploy/ the way a
// user would meet them: the Kubernetes manifests decode strictly into the
// Kubernetes API types and hang together (probes on the agent's HTTP port,
// the ingest port of the pipeline in the ConfigMap, volumes that exist, the
// security context), the systemd unit passes `systemd-analyze verify` and
// `systemd-analyze security`, and the agent built from this checkout really
// starts with each deployment's config and pipelines, answers its probes
// and takes events with the deployment's token.
//
// It is a module of its own because it needs k8s.io/api and a Kafka test
// broker, which the agent must not depend on. Its only content is tests;
// run them with `cd internal/deploycheck && go test ./...`. Tests that need
// systemd-analyze or strace skip without them unless
// DEPLOY_CHECK_REQUIRED=1.
package deploycheck
