//! Log bytes per streamed token: one record per SSE event (`AppendStreamEvent`, one commit
//! per token) against one `AppendStreamEvents` record per batch of 1 to 20 events (the API
//! flushes a stream's events on a timer, so a batch holds what one interval brings).
//!
//! Responsible for: encoding the same turn both ways with the real record framing and
//! mutation encoding, and printing bytes per token. Not responsible for: timing, or the
//! `StartStream`/`DeleteStream` records, which are the same either way.
//!
//! Run with `cargo run -p halyard-storage --example stream_bytes`.

use halyard_storage::codec::Encoder;
use halyard_storage::record::{self, RecordType};
use halyard_storage::{ids, Mutation, StreamEvent, Txn};

/// Batch sizes shown: a stream's events per flush interval.
const BATCHES: [usize; 5] = [1, 2, 5, 10, 20];
/// Tokens in the turn measured.
const TURN: u64 = 100;

/// A token event as the API streams it.
fn token(n: u64) -> StreamEvent {
    StreamEvent {
        id: n,
        event: "token".into(),
        data: format!(r#"{{"delta":" word","index":{n}}}"#),
    }
}

/// Bytes on disk of one commit: the framed `Txn` record.
fn record_bytes(tenant: &str, mutations: &[Mutation]) -> usize {
    let mut e = Encoder::default();
    Txn::encode_parts(tenant, mutations, &mut e);
    let mut out = Vec::new();
    record::encode(RecordType::Txn, &e.into_bytes(), &mut out);
    out.len()
}

/// Total log bytes of a turn stored one record per event.
fn per_event(tenant: &str, stream_id: &str, events: &[StreamEvent]) -> usize {
    let one = |ev: &StreamEvent| Mutation::AppendStreamEvent {
        stream_id: stream_id.to_owned(),
        event: ev.clone(),
    };
    events
        .iter()
        .map(|ev| record_bytes(tenant, &[one(ev)]))
        .sum()
}

/// Total log bytes of a turn stored one record per batch of `batch` events.
fn batched(tenant: &str, stream_id: &str, events: &[StreamEvent], batch: usize) -> usize {
    let one = |chunk: &[StreamEvent]| Mutation::AppendStreamEvents {
        stream_id: stream_id.to_owned(),
        events: chunk.to_vec(),
    };
    let chunks = events.chunks(batch);
    chunks.map(|c| record_bytes(tenant, &[one(c)])).sum()
}

fn main() {
    // Ids as the server makes them: `ten_`/`str_` and 20 characters.
    let tenant = ids::new_id(ids::TENANT);
    let stream_id = ids::new_id("str_");
    let sample = token(1);
    println!(
        "tenant id {} bytes, stream id {} bytes, event `{}`, data `{}`",
        tenant.len(),
        stream_id.len(),
        sample.event,
        sample.data
    );
    let events: Vec<StreamEvent> = (1..=TURN).map(token).collect();
    let before = per_event(&tenant, &stream_id, &events) as f64 / TURN as f64;
    println!("{TURN} tokens, one record per event: {before:.1} B/token");
    println!("events per batch | B/token | ratio");
    for batch in BATCHES {
        let after = batched(&tenant, &stream_id, &events, batch) as f64 / TURN as f64;
        println!("{batch:>16} | {after:>7.1} | {:.2}x", before / after);
    }
}
