// Package state is Sluice's per-entity state store: the keyed state of
// stateful pipeline steps (a user's counters, a session's features), kept in
// an embedded Badger v4 database under the agent's data dir, committed
// together with the input offsets of the batch that produced it.
//
// # Call pattern
//
// The store is built for the keyed wasm processor, which for every batch:
//
//  1. asks [Store.Applied] for the last offset committed per input source and
//     partition, and skips the state updates of redelivered messages;
//  2. calls [Store.Load] once with every key of the batch: keys in memory
//     (hot or recently committed) cost nothing, the rest come from Badger in
//     one read transaction (split over the cores when there are many);
//  3. runs the plugin, which is a pure function of (events, states);
//  4. calls [Store.Commit] once with every new state and the batch's last
//     offsets: one Badger transaction, durable before Commit returns when
//     Options.SyncWrites is set, and only then acknowledges the batch.
//
// Because the states and the offsets land in the same transaction, a crash
// either loses both (the batch is redelivered and applied again) or keeps
// both (the redelivered batch is recognised by its offsets and skipped):
// state is updated effectively once even though delivery is at least once.
//
// Load and Commit are not one transaction: a caller that runs two batches
// touching the same key concurrently must serialise them itself, as the
// processor does per step.
//
// # Commit log and checkpoints
//
// Commit does not write each key under its own Badger key. Its transaction
// holds one log record with all of the batch's writes, plus the offsets;
// memory is then updated, and the keys stay pinned in memory ("dirty")
// until a background checkpoint, about once a second, writes each dirty
// key's latest value under its own key and deletes the records. A key
// updated by a hundred batches between two checkpoints is written out once.
// This more than doubles the throughput of 1024-write commits, which in
// Badger are dominated by per-entry work on its single write goroutine; see
// RATIONALE.md. Open replays records left by a crash; a failed commit stops
// the store until the agent restarts and replays (see [Store.Commit]).
//
// # Namespaces and TTL
//
// Each stateful step owns a [Namespace]. Keys of different namespaces never
// meet, whatever bytes they hold. A namespace's TTL is measured either in
// event time (an entity idle for longer than the TTL, relative to the batch
// being processed, reads as absent: replays give the same answer) or in
// wall time (Badger's entry expiry, whole seconds, fixed at commit time).
//
// # On-disk layout
//
// Every Badger key starts with a one-byte kind:
//
//	'm' name                       -> meta; "format_version" holds FormatVersion (uint32 BE)
//	's' namespace 0x00 entity-key  -> state: 0x01, LastEvent (int64 BE, unix ns), plugin bytes
//	'o' source 0x00 partition      -> offset: int64 BE
//	'l' seq (uint64 BE) chunk (uint32 BE) -> a commit's log record, until checkpointed
//
// Namespace names are [a-z0-9_-]+ and sources never contain 0x00, so the
// 0x00 separator makes every key unambiguous. FORMAT.md beside this file
// is the full description; Open refuses a store written with another
// FormatVersion.
package state
