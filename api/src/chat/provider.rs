//! Model providers: what a turn asks of a model, and the built-in `echo` provider.
//!
//! Responsible for: the [`Prompt`] handed to a provider, the deltas it streams back through
//! a callback (which can stop it: the client went away), its [`Completion`] and its
//! errors; `echo` answers `"Echo: " + last user message`, word by word, with a delay per
//! token, and counts tokens as whitespace-separated words. Not responsible for: HTTP to an
//! upstream (see `openai`) or storing anything.

use std::fmt;
use std::time::Duration;

use halyard_storage::Usage;

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

/// What the delta callback tells the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// Stop: nobody is listening any more.
    Stop,
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
    /// The upstream answered with an error or could not be reached.
    Upstream(String),
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProviderError::NotConfigured(m) => write!(f, "Model provider is not configured: {m}"),
            ProviderError::Upstream(m) => write!(f, "Model provider failed: {m}"),
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
pub struct Echo {
    /// Delay before each token.
    pub delay: Duration,
}

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

    /// Streams the answer word by word into `on_delta`.
    pub fn run(&self, prompt: &Prompt, on_delta: &mut dyn FnMut(&str) -> Flow) -> Completion {
        let answer = Self::answer(prompt);
        let input = prompt.messages.iter().map(|(_, t)| words(t)).sum();
        let mut text = String::with_capacity(answer.len());
        let mut finish = "stop";
        for (i, word) in answer.split_whitespace().enumerate() {
            if !self.delay.is_zero() {
                std::thread::sleep(self.delay);
            }
            let delta = if i == 0 {
                word.to_string()
            } else {
                format!(" {word}")
            };
            text.push_str(&delta);
            if on_delta(&delta) == Flow::Stop {
                finish = "cancelled";
                break;
            }
        }
        let output = words(&text);
        Completion {
            text,
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
        let mut deltas = Vec::new();
        let c = Echo {
            delay: Duration::ZERO,
        }
        .run(&prompt, &mut |d| {
            deltas.push(d.to_string());
            Flow::Continue
        });
        assert_eq!(deltas, ["Echo:", " hello", " there", " world"]);
        assert_eq!(c.text, "Echo: hello there world");
        assert_eq!(c.usage.input_tokens, 5);
        assert_eq!(c.usage.output_tokens, 4);
        let stopped = Echo {
            delay: Duration::ZERO,
        }
        .run(&prompt, &mut |_| Flow::Stop);
        assert_eq!(stopped.text, "Echo:");
        assert_eq!(stopped.finish_reason, "cancelled");
    }
}
