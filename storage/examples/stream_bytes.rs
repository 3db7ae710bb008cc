//! Log bytes per streamed token: one record per SSE event (`AppendStreamEvent`, one commit
//! per token) against one `AppendStreamEvents` record per 20 events.
//!
//! Responsible for: encoding the same turn both ways with the real record framing and
//! mutation encoding, and printing bytes per token. Not responsible for: timing, or the
//! `StartStream`/`DeleteStream` records, which are the same either way.
//!
//! Run with `cargo run -p halyard-storage --example stream_bytes`.

use halyard_storage::codec::Encoder;
use halyard_storage::record::{self, RecordType};
use halyard_storage::{ids, Mutation, StreamEvent, Txn};

/// Events per batch: the API commits every ~20 ms, about 20 tokens at a fast model's rate.
const BATCH: usize = 20;

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

/// Total log bytes of a turn stored one record per batch of [`BATCH`] events.
fn batched(tenant: &str, stream_id: &str, events: &[StreamEvent]) -> usize {
    let one = |chunk: &[StreamEvent]| Mutation::AppendStreamEvents {
        stream_id: stream_id.to_owned(),
        events: chunk.to_vec(),
    };
    let chunks = events.chunks(BATCH);
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
    println!("tokens per turn | one record per event | one record per {BATCH} events | ratio");
    for turn in [20u64, 100, 500, 2000] {
        let events: Vec<StreamEvent> = (1..=turn).map(token).collect();
        let before = per_event(&tenant, &stream_id, &events) as f64 / turn as f64;
        let after = batched(&tenant, &stream_id, &events) as f64 / turn as f64;
        println!(
            "{turn:>15} | {before:>14.1} B/token | {after:>17.1} B/token | {:.2}x",
            before / after
        );
    }
}
