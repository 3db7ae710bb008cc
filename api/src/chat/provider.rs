//! Model providers: what a turn asks of a model, and the built-in `echo` provider.
//!
//! Responsible for: the [`Prompt`] handed to a provider, its [`Completion`] and its errors
//! (with the API error each one is); `echo` answers `"Echo: " + last user message`, word by
//! word ([`Echo::deltas`]; the turn paces them with a timer), and counts tokens as
//! whitespace-separated words. Not responsible for: HTTP to an upstream (see `openai`),
//! pacing, or storing anything.

use std::fmt;

use halyard_storage::Usage;

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
}

impl Speaker {
    /// The OpenAI role name.
    pub fn name(self) -> &'static str {
        match self {
            Speaker::System => "system",
            Speaker::User => "user",
            Speaker::Assistant => "assistant",
        }
    }
}

/// The input of one model call.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// The conversation, system prompt first.
    pub messages: Vec<(Speaker, String)>,
    /// Model name.
    pub model: String,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Output cap.
    pub max_tokens: Option<u64>,
}

/// The result of a model call.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The whole text (possibly partial when stopped).
    pub text: String,
    /// Token usage.
    pub usage: Usage,
    /// `stop`, `length`, `cancelled`, ...
    pub finish_reason: String,
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
    /// The answer to `prompt`: `Echo: ` and the last user message.
    pub fn answer(prompt: &Prompt) -> String {
        let last = prompt
            .messages
            .iter()
            .rev()
            .find(|(s, _)| *s == Speaker::User)
            .map_or("", |(_, t)| t.as_str());
        format!("Echo: {last}")
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
        let input = prompt.messages.iter().map(|(_, t)| words(t)).sum();
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
                (Speaker::System, "be nice".into()),
                (Speaker::User, "hello there  world".into()),
            ],
            model: "echo".into(),
            temperature: None,
            max_tokens: None,
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
