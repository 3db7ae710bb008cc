//! Halyard's durable store: an append-only log of CRC'd records in segment files, written by
//! one thread with group commit, replayed into sharded in-memory state on open, compacted
//! into snapshots.
//!
//! # Modules
//!
//! | module | responsible for |
//! |---|---|
//! | [`record`] | record frame, sans-I/O reader (fuzz entry point) |
//! | [`header`] | 32-byte file header of segments and snapshots |
//! | [`segment`] | segment names, durable creation, [`segment::recover_segment_bytes`] |
//! | [`codec`] | varint / length-prefixed payload primitives |
//! | [`model`] | resource structs and their encoding |
//! | [`mutation`] | typed mutations, the `Txn` payload |
//! | [`state`] | in-memory state, validation + apply, queries |
//! | [`writer`] | writer thread, group commit, segment roll, poisoning |
//! | [`fsync`] | `FsyncPolicy`, the `Syncer` seam |
//! | [`recovery`] | open-time replay, torn tail, corruption, repair |
//! | [`snapshot`] | snapshot files and crash-safe compaction |
//! | [`check`] | offline `halyard check` |
//! | [`lock`] | the data directory's lock (one process at a time) |
//! | [`backend`] | the `Backend` trait the API uses |
//! | [`store`] | the embedded `Store` implementing it |
//! | [`ids`] | prefixed id generator |
//!
//! # On-disk format (version 1)
//!
//! A data directory holds segment files `NNNNNNNNNNNNNNNNNNNN.log` (20 decimal digits, the
//! segment number, starting at 1), at most one live snapshot `snap-NNNNNNNNNNNNNNNNNNNN.snap`
//! (N = the last segment it covers), transiently `snap-N.snap.tmp`, and the lock file
//! `LOCK` (see [`lock`]; it holds the pid of the process that has the directory open). All
//! integers are little-endian.
//!
//! **File header** (32 bytes, segments and snapshots):
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic: `HLYDLOG\0` (segment) or `HLYDSNP\0` (snapshot) |
//! | 8..12 | format version, u32 = 1 |
//! | 12..20 | number, u64: the segment number, or the last segment a snapshot covers |
//! | 20..24 | reserved, zero |
//! | 24..28 | masked CRC32C of bytes 0..24, u32 |
//! | 28..32 | reserved, zero |
//!
//! **Record** (from byte 32 on, back to back, no padding):
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | `len`: payload length, u32 (at most 128 MiB) |
//! | 4..8 | masked CRC32C (Castagnoli) over the type byte followed by the payload, u32 |
//! | 8 | type: 1 = `Txn` (segments), 2 = `SnapshotEntry`, 3 = `SnapshotEnd` (snapshots) |
//! | 9..9+len | payload |
//!
//! The mask is LevelDB's, `rotr(crc, 15) + 0xa282ead8`, because a CRC over data that
//! embeds CRCs is weak. A segment rolls over once the next record would take it past the
//! segment size (default 64 MiB); a record larger than that gets a segment of its own.
//!
//! **Payloads** use the [`codec`] primitives: `varint` is unsigned LEB128, `str`/`bytes`
//! are a varint length and the bytes (strings UTF-8), `opt<T>` is a byte 0/1 then `T`,
//! `list<T>` is a varint count then the items, `f64` is 8 bytes of IEEE-754 bits, a digest
//! is 32 raw bytes. A `Txn` payload (and a `SnapshotEntry` payload) is
//! `str tenant | varint count | count × mutation`, each mutation a tag byte (1..=23, see
//! [`mutation::Mutation::encode`]) followed by its fields in declaration order as in
//! [`model`]. `AppendMessage` carries the encoded message as a length-prefixed byte string
//! so that replay copies it into memory without re-encoding. A `SnapshotEnd` payload is
//! `varint entries`. Every commit is exactly one record, so a crash keeps all of a
//! transaction or none of it.
//!
//! **Stream mutations** (a tag keeps its meaning forever; old tags are still decoded):
//!
//! | tag | mutation | fields after the tag |
//! |---|---|---|
//! | 17 | `StartStream` (before stream times; decode only) | `str stream_id \| str owner`, read as `created_at` 0 (unknown) |
//! | 18 | `AppendStreamEvent` (one event) | `str stream_id \| varint id \| str event \| str data` |
//! | 19 | `DeleteStream` | `str stream_id` |
//! | 22 | `StartStream` | `str stream_id \| str owner \| varint created_at` (ms since the epoch) |
//! | 23 | `AppendStreamEvents` (a batch) | `str stream_id \| varint count \| count × event` |
//! | 23, each event | | `varint id_delta \| varint name_ref \| name_ref−1 name bytes if name_ref > 0 \| str data` |
//!
//! In a batch, an event's id is the previous event's id plus `id_delta` (mod 2^64), the
//! "previous id" of the first event being 0: the first delta is the first id itself, so a
//! batch decodes without the state. `name_ref` 0 repeats the previous event's name (the
//! empty name before the first); `name_ref` n > 0 is followed by a name of n−1 UTF-8 bytes.
//! A run of token events therefore costs one byte of id and one of name each.
//!
//! **Recovery**: the newest snapshot is loaded (it must be complete: header, entries and the
//! end record with the right count), segments after it are replayed in order. Damage with
//! no valid record after it in the last segment is a torn write and is cut; damage followed
//! by a valid record, or in a segment that has a successor, is corruption and stops the open
//! with the file and offset, unless `repair` cuts the log there. See [`recovery`].
//!
//! # Concurrency
//!
//! State is sharded per tenant (64 `RwLock`ed shards keyed by a hash of the tenant id, plus
//! sharded cross-tenant indexes); see [`state`]. A commit validates, applies and enqueues
//! under one shard's write lock; readers take read locks and never wait for an fsync. The
//! writer thread completes commits once their batch is durable.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
pub mod check;
pub mod codec;
pub mod error;
pub mod fsync;
pub mod header;
pub mod health;
pub mod ids;
pub mod lock;
pub mod model;
pub mod mutation;
pub mod record;
pub mod recovery;
pub mod segment;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod writer;

pub use backend::{Backend, Completion, Listed, Page, SessionFilter, StreamReplay};
pub use check::{check, CheckReport};
pub use error::{OpenError, StoreError};
pub use fsync::{FsyncPolicy, OsSyncer, ParseFsyncPolicyError, Syncer};
pub use health::Health;
pub use model::*;
pub use mutation::{Mutation, Txn};
pub use recovery::RecoveryReport;
pub use segment::recover_segment_bytes;
pub use snapshot::{CompactReport, CompactStep};
pub use store::{LogStats, Options, Store};
