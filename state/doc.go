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
//  2. calls [Store.Load] once with every key of the batch: hot keys come from
//     an in-memory cache, the misses from one Badger read transaction;
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
// # Namespaces and TTL
//
// Each stateful step owns a [Namespace]. Keys of different namespaces never
// meet, whatever bytes they hold (the layout is in FORMAT.md beside this
// file). A namespace's TTL is measured either in event time (an entity idle
// for longer than the TTL, relative to the batch being processed, reads as
// absent: replays give the same answer) or in wall time (Badger's own entry
// expiry, whole seconds).
//
// # On-disk layout
//
// Every Badger key starts with a one-byte kind:
//
//	'm' name                      -> meta; "format_version" holds FormatVersion (uint32, big endian)
//	's' namespace 0x00 entity-key -> state: 0x01, LastEvent (int64 BE, unix ns), plugin bytes
//	'o' source 0x00 partition     -> offset: int64 big endian
//
// Namespace names are [a-z0-9_-]+ and sources never contain 0x00, so the
// 0x00 separator makes every key unambiguous. FORMAT.md is the full
// description; Open refuses a store written with another FormatVersion.
package state
