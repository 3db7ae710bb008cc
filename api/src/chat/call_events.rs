//! The tool-call events of a streamed direct model call (`/chat/stream` with `messages`):
//! `tool_call_start{id, name}` once a call is named, `tool_call_delta{id, arguments}` for
//! each new piece of its arguments, `tool_call_end{id, name, arguments}` when the model is
//! done. The model's calls are not run: the client runs them and sends the results back.
//!
//! Responsible for: which part of each call was sent already, so that fragments assembled
//! by the provider become exactly one start, the deltas in order, and one end. Not
//! responsible for: assembling fragments (`openai::Relay`) or publishing (the turn).

use serde_json::{json, Value};

use super::provider::ToolCall;
use super::sse;

/// What was sent of each call, by index: its argument bytes, once started.
#[derive(Debug, Default)]
pub struct CallEvents {
    sent: Vec<usize>,
}

/// A call's id, or the one the completion will give it (`call_{index}`).
pub fn call_id(index: usize, call: &ToolCall) -> String {
    if call.id.is_empty() {
        format!("call_{index}")
    } else {
        call.id.clone()
    }
}

impl CallEvents {
    /// The events for what `calls` hold beyond what was sent.
    pub fn progress(&mut self, calls: &[ToolCall]) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        for (i, c) in calls.iter().enumerate() {
            if i == self.sent.len() {
                if c.name.is_empty() {
                    break;
                }
                out.push((
                    sse::TOOL_CALL_START,
                    json!({"id": call_id(i, c), "name": c.name}),
                ));
                self.sent.push(0);
            }
            let Some(sent) = self.sent.get_mut(i) else {
                break;
            };
            // Arguments only grow; a piece that splits a character waits for the rest.
            if c.arguments.len() > *sent && c.arguments.is_char_boundary(*sent) {
                let piece = &c.arguments[*sent..];
                out.push((
                    sse::TOOL_CALL_DELTA,
                    json!({"id": call_id(i, c), "arguments": piece}),
                ));
                *sent = c.arguments.len();
            }
        }
        out
    }

    /// The rest of every call, then its end.
    pub fn end(&mut self, calls: &[ToolCall]) -> Vec<(&'static str, Value)> {
        let mut out = self.progress(calls);
        for (i, c) in calls.iter().enumerate() {
            let data = json!({"id": call_id(i, c), "name": c.name, "arguments": c.arguments});
            out.push((sse::TOOL_CALL_END, data));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str, name: &str, args: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: args.into(),
        }
    }

    #[test]
    fn fragments_become_one_start_the_deltas_and_one_end() {
        let mut e = CallEvents::default();
        fn names(v: &[(&'static str, Value)]) -> Vec<&'static str> {
            v.iter().map(|(n, _)| *n).collect()
        }
        let first = e.progress(&[call("c1", "get", "{\"ci")]);
        assert_eq!(names(&first), ["tool_call_start", "tool_call_delta"]);
        assert_eq!(first[1].1["arguments"], "{\"ci");
        let more = e.progress(&[call("c1", "get", "{\"city\":1}"), call("", "", "")]);
        assert_eq!(names(&more), ["tool_call_delta"]);
        assert_eq!(more[0].1["arguments"], "ty\":1}");
        let end = e.end(&[call("c1", "get", "{\"city\":1}"), call("", "clock", "{}")]);
        assert_eq!(
            names(&end),
            [
                "tool_call_start",
                "tool_call_delta",
                "tool_call_end",
                "tool_call_end"
            ]
        );
        assert_eq!(end[0].1["id"], "call_1");
        assert_eq!(end[2].1["arguments"], "{\"city\":1}");
    }
}
