//! Chat prompts: the model's own Jinja chat template rendered with minijinja, or ChatML with
//! Qwen's default system prompt when the model ships no template.

use minijinja::{Environment, Error as JinjaError, ErrorKind, context};
use serde::Serialize;

use crate::error::{Error, Result};

/// Qwen2.5's default system prompt (what its own template inserts when none is given).
pub const DEFAULT_SYSTEM: &str = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Message { role: role.into(), content: content.into() }
    }
}

/// The prompt text for `messages`, ending with the opening of the assistant's turn.
pub fn render(template: Option<&str>, messages: &[Message]) -> Result<String> {
    let Some(template) = template else {
        return Ok(chatml(messages));
    };
    let mut env = Environment::new();
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> std::result::Result<String, JinjaError> {
        Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
    });
    env.add_template("chat", template)
        .map_err(|e| Error::Usage(format!("the model's chat template does not parse: {e}")))?;
    let tmpl = env.get_template("chat").map_err(|e| Error::Usage(e.to_string()))?;
    tmpl.render(context! { messages => messages, add_generation_prompt => true, tools => Option::<()>::None })
        .map_err(|e| Error::Usage(format!("rendering the model's chat template failed: {e}")))
}

/// ChatML: `<|im_start|>role\ncontent<|im_end|>\n` per message, the default system prompt first
/// if the conversation has none.
pub fn chatml(messages: &[Message]) -> String {
    let mut out = String::new();
    if messages.first().is_none_or(|m| m.role != "system") {
        out.push_str(&format!("<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n"));
    }
    for m in messages {
        out.push_str(&format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content));
    }
    out.push_str("<|im_start|>assistant\n");
    out
}
