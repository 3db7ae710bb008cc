//! Model providers: what a turn asks of a model, and the built-in `echo` provider.
//!
//! Responsible for: the [`Prompt`] handed to a provider (its lines, tool calls and results
//! included, and the tools it may call), its [`Completion`] and its errors (with the API
//! error each one is); `echo` answers `"Echo: " + last user message`, word by word
//! ([`Echo::deltas`]; the turn paces them with a timer), and counts tokens as
//! whitespace-separated words. Its tool-calling mode is deterministic, so that tests need no
//! model: a last user message `call NAME {json}` naming an offered tool asks for that call;
//! once the results are in, it answers `Echo: ` and the results. Not responsible for: HTTP
//! to an upstream (see `openai`), pacing, or storing anything.

use std::fmt;

use halyard_storage::Usage;
use serde_json::Value;

use crate::error::ApiError;

/// Who said a line of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    /// The system prompt.
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// A tool's result.
    Tool,
}

impl Speaker {
    /// The OpenAI role name.
    pub fn name(self) -> &'static str {
        match self {
            Speaker::System => "system",
            Speaker::User => "user",
            Speaker::Assistant => "assistant",
            Speaker::Tool => "tool",
        }
    }
}

/// A call of a tool that a model asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The model's id of the call (a tool result names it).
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments, as the JSON text the model wrote (it may be invalid).
    pub arguments: String,
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// The JSON Schema of its arguments.
    pub parameters: Value,
}

/// One line of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Who said it.
    pub speaker: Speaker,
    /// What was said (a tool's result, for a tool line).
    pub text: String,
    /// The calls an assistant line asked for.
    pub tool_calls: Vec<ToolCall>,
    /// The call a tool line answers.
    pub tool_call_id: Option<String>,
}

impl Line {
    /// A plain line.
    pub fn say(speaker: Speaker, text: impl Into<String>) -> Line {
        Line {
            speaker,
            text: text.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// The input of one model call.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// The conversation, system prompt first.
    pub messages: Vec<Line>,
    /// Model name.
    pub model: String,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Output cap.
    pub max_tokens: Option<u64>,
    /// The tools the model may call (none: it may call none).
    pub tools: Vec<ToolSpec>,
}

impl Prompt {
    /// The prompt's size in words (the input count when a provider reports none).
    pub fn words(&self) -> u64 {
        self.messages
            .iter()
            .map(|l| {
                words(&l.text)
                    + l.tool_calls
                        .iter()
                        .map(|c| words(&c.arguments))
                        .sum::<u64>()
            })
            .sum()
    }
}

/// The result of a model call.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The whole text (possibly partial when stopped).
    pub text: String,
    /// Token usage.
    pub usage: Usage,
    /// `stop`, `length`, `tool_calls`, `cancelled`, ...
    pub finish_reason: String,
    /// The tools the model asks to call (then `text` may be empty).
    pub tool_calls: Vec<ToolCall>,
}

/// Why a model call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderError {
    /// The agent's provider cannot be used (no API key secret, unknown provider).
    NotConfigured(String),
    /// The upstream could not be reached, or its stream broke.
    Upstream(String),
    /// The upstream answered with an error status.
    Status {
        /// Its HTTP status.
        status: u16,
        /// Its `Retry-After`, in seconds.
        retry_after: Option<u64>,
        /// Its error message (may be empty).
        message: String,
    },
}

impl ProviderError {
    /// The API error this is: `429 RATE_LIMIT_EXCEEDED` (with the upstream's `Retry-After`)
    /// when the upstream rate-limits us, else `503 SERVICE_UNAVAILABLE` (a backend that
    /// failed or is not configured).
    pub fn to_api(&self) -> ApiError {
        match self {
            ProviderError::Status {
                status: 429,
                retry_after,
                ..
            } => ApiError::RateLimited(self.to_string(), retry_after.unwrap_or(1) * 1000),
            _ => ApiError::Unavailable(self.to_string()),
        }
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProviderError::NotConfigured(m) => write!(f, "Model provider is not configured: {m}"),
            ProviderError::Upstream(m) => write!(f, "Model provider failed: {m}"),
            ProviderError::Status {
                status, message, ..
            } if message.is_empty() => write!(f, "Model provider answered HTTP {status}"),
            ProviderError::Status {
                status, message, ..
            } => write!(f, "Model provider answered HTTP {status}: {message}"),
        }
    }
}

impl std::error::Error for ProviderError {}

/// Whitespace-separated words: the token count of `echo`.
pub fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The model settings of an agent on the built-in `echo` provider (the default).
pub fn echo_model() -> halyard_storage::ModelConfig {
    halyard_storage::ModelConfig {
        provider: "echo".into(),
        model: "echo".into(),
        base_url: None,
        api_key_secret: None,
        temperature: None,
        max_tokens: None,
        pricing: None,
    }
}

/// The built-in deterministic provider.
#[derive(Debug, Clone, Copy)]
pub struct Echo;

impl Echo {
    /// The answer to `prompt`: `Echo: ` and the last user message, or, right after tool
    /// results, `Echo: ` and those results.
    pub fn answer(prompt: &Prompt) -> String {
        let results: Vec<&str> = prompt
            .messages
            .iter()
            .rev()
            .take_while(|l| l.speaker == Speaker::Tool)
            .map(|l| l.text.as_str())
            .collect();
        if !results.is_empty() {
            let in_order: Vec<&str> = results.into_iter().rev().collect();
            return format!("Echo: {}", in_order.join(" "));
        }
        let last = prompt
            .messages
            .iter()
            .rev()
            .find(|l| l.speaker == Speaker::User)
            .map_or("", |l| l.text.as_str());
        format!("Echo: {last}")
    }

    /// The tool calls the prompt's last line asks for: lines `call NAME {json}` (one per
    /// line, several for parallel calls) naming offered tools, when the last line is the
    /// user's. The arguments are passed as written, valid or not.
    pub fn tool_calls(prompt: &Prompt) -> Vec<ToolCall> {
        let Some(last) = prompt
            .messages
            .last()
            .filter(|l| l.speaker == Speaker::User)
        else {
            return Vec::new();
        };
        let offered = |name: &str| prompt.tools.iter().any(|t| t.name == name);
        last.text
            .lines()
            .filter_map(|line| {
                let rest = line.trim().strip_prefix("call ")?;
                let (name, args) = rest.split_once(' ').unwrap_or((rest, "{}"));
                offered(name).then(|| (name.to_string(), args.trim().to_string()))
            })
            .enumerate()
            .map(|(i, (name, arguments))| ToolCall {
                id: format!("call_{}_{i}", prompt.messages.len()),
                name,
                arguments,
            })
            .collect()
    }

    /// The answer's deltas: its words, each after the first with its leading space.
    pub fn deltas(prompt: &Prompt) -> Vec<String> {
        Self::answer(prompt)
            .split_whitespace()
            .enumerate()
            .map(|(i, w)| {
                if i == 0 {
                    w.to_string()
                } else {
                    format!(" {w}")
                }
            })
            .collect()
    }

    /// The completion of `text` (all or part of the answer) for `prompt`.
    pub fn completion(prompt: &Prompt, text: &str, finish: &str) -> Completion {
        let input = prompt.words();
        let output = words(text);
        Completion {
            text: text.to_string(),
            usage: Usage {
                input_tokens: input,
                output_tokens: output,
                total_tokens: input + output,
                latency_ms: 0,
            },
            finish_reason: finish.into(),
            tool_calls: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_streams_words_and_counts() {
        let prompt = Prompt {
            messages: vec![
                Line::say(Speaker::System, "be nice"),
                Line::say(Speaker::User, "hello there  world"),
            ],
            model: "echo".into(),
            temperature: None,
            max_tokens: None,
            tools: Vec::new(),
        };
        let deltas = Echo::deltas(&prompt);
        assert_eq!(deltas, ["Echo:", " hello", " there", " world"]);
        let c = Echo::completion(&prompt, &deltas.concat(), "stop");
        assert_eq!(c.text, "Echo: hello there world");
        assert_eq!(c.usage.input_tokens, 5);
        assert_eq!(c.usage.output_tokens, 4);
        let stopped = Echo::completion(&prompt, &deltas[0], "cancelled");
        assert_eq!(stopped.text, "Echo:");
        assert_eq!(stopped.usage.output_tokens, 1);
    }

    #[test]
    fn echo_calls_offered_tools_then_echoes_their_results() {
        let mut prompt = Prompt {
            messages: vec![Line::say(
                Speaker::User,
                "call get_weather {\"city\": \"Oslo\"}\ncall nope {}\ncall clock",
            )],
            model: "echo".into(),
            temperature: None,
            max_tokens: None,
            tools: ["get_weather", "clock"]
                .map(|n| ToolSpec {
                    name: n.into(),
                    description: None,
                    parameters: serde_json::json!({"type": "object"}),
                })
                .to_vec(),
        };
        let calls = Echo::tool_calls(&prompt);
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(
            (calls[0].name.as_str(), calls[0].arguments.as_str()),
            ("get_weather", "{\"city\": \"Oslo\"}")
        );
        assert_eq!(
            (calls[1].name.as_str(), calls[1].arguments.as_str()),
            ("clock", "{}")
        );
        assert_ne!(calls[0].id, calls[1].id);
        prompt.messages.push(Line {
            speaker: Speaker::Assistant,
            text: String::new(),
            tool_calls: calls.clone(),
            tool_call_id: None,
        });
        for (c, result) in calls.iter().zip(["sunny", "12:00"]) {
            prompt.messages.push(Line {
                tool_call_id: Some(c.id.clone()),
                ..Line::say(Speaker::Tool, result)
            });
        }
        assert!(
            Echo::tool_calls(&prompt).is_empty(),
            "no call after results"
        );
        assert_eq!(Echo::answer(&prompt), "Echo: sunny 12:00");
    }

    #[test]
    fn upstream_statuses_map_to_the_envelope() {
        let limited = ProviderError::Status {
            status: 429,
            retry_after: Some(7),
            message: "slow down".into(),
        };
        assert_eq!(limited.to_api().status(), 429);
        assert!(
            matches!(limited.to_api(), ApiError::RateLimited(m, 7000) if m.contains("slow down"))
        );
        for status in [401, 404, 500] {
            let e = ProviderError::Status {
                status,
                retry_after: None,
                message: String::new(),
            };
            assert_eq!(e.to_api().code(), "SERVICE_UNAVAILABLE");
            assert!(e.to_string().contains(&status.to_string()));
        }
    }
}
