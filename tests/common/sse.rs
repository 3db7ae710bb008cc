//! Reading server-sent event streams in tests: events framed exactly as `id`, `event`,
//! `data` lines, heartbeats counted.

use halyard_testkit::Client;
use serde_json::Value;

use super::Tenant;

/// One parsed SSE event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: u64,
    pub name: String,
    pub data: Value,
}

/// What a client read of a stream.
pub struct Sse {
    pub events: Vec<Event>,
    pub raw: String,
    pub heartbeats: usize,
}

/// Reads SSE chunks until the stream ends (or `stop` says so after an event).
pub fn read_sse(c: &mut Client, mut stop: impl FnMut(&[Event]) -> bool) -> Sse {
    let mut out = Sse {
        events: Vec::new(),
        raw: String::new(),
        heartbeats: 0,
    };
    let mut pending = String::new();
    while let Some(chunk) = c.chunk().expect("chunk") {
        let text = std::str::from_utf8(&chunk).expect("utf-8");
        out.raw.push_str(text);
        pending.push_str(text);
        while let Some(end) = pending.find("\n\n") {
            let block: String = pending.drain(..end + 2).collect();
            let block = &block[..end];
            if block == ": heartbeat" {
                out.heartbeats += 1;
            } else {
                out.events.push(parse_event(block));
            }
        }
        if stop(&out.events) {
            break;
        }
    }
    out
}

/// Events of a stream read to its end (or until `stop`), and its raw text.
pub fn read_events(c: &mut Client, stop: impl FnMut(&[Event]) -> bool) -> (Vec<Event>, String) {
    let sse = read_sse(c, stop);
    (sse.events, sse.raw)
}

pub fn parse_event(block: &str) -> Event {
    let lines: Vec<&str> = block.split('\n').collect();
    assert_eq!(
        lines.len(),
        3,
        "an event is exactly id, event, data: {block:?}"
    );
    let id = lines[0]
        .strip_prefix("id: ")
        .expect("id line")
        .parse()
        .expect("id");
    let name = lines[1]
        .strip_prefix("event: ")
        .expect("event line")
        .to_string();
    let data = serde_json::from_str(lines[2].strip_prefix("data: ").expect("data line"))
        .expect("data JSON");
    Event { id, name, data }
}

/// Opens a stream; returns the connection (positioned after the head) and the head.
pub fn open_stream(t: &Tenant, path: &str, body: &Value) -> (Client, halyard_testkit::Response) {
    let mut c = Client::connect(t.addr).unwrap();
    c.send(&t.req("POST", path).json(body).bytes()).unwrap();
    let head = c.head().unwrap();
    (c, head)
}

pub fn names(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.name.as_str()).collect()
}
