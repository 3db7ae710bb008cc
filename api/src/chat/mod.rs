//! Chat: agent turns and direct model calls, answered as JSON or streamed as SSE, with
//! resumable streams.
//!
//! Responsible for: the runtime that starts turns as tasks on the event loops ([`runtime`]),
//! the turn itself ([`turn`]), the providers ([`provider`], [`openai`]; the echo's
//! token clock [`pace`]), SSE framing
//! ([`sse`]), the registry of live streams ([`hub`]) and turn metrics ([`metrics`]). The HTTP glue of the chat routes
//! lives with the other handlers.

pub mod call_events;
pub mod follow;
pub mod http_tool;
pub mod hub;
pub mod mcp;
pub mod mcp_import;
pub mod metrics;
pub mod openai;
pub mod openai_chunk;
pub mod openai_compat;
pub mod pace;
pub mod provider;
pub mod runtime;
pub mod sse;
pub mod tool_round;
pub mod tool_test;
pub mod tracer;
pub mod turn;
