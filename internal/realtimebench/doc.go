// Package realtimebench measures the shipped real-time pipeline
// (pipelines/realtime.yaml) end to end through Kafka: events per second
// from the user_events topic through validate -> features -> score to the
// predictions and dead_letters topics on the embedded dev broker, side by
// side with the same processors reading and writing files (what the broker
// costs), and produce-to-prediction latency at a fixed fraction of that
// rate. The streams run on the agent's own environment (agent.New), with
// state committed to Badger as the agent does. It holds benchmarks only;
// the HTTP figures come from wrk against the agent binary, with
// testdata/post_event.lua (see docs/BENCHMARKS.md).
package realtimebench
