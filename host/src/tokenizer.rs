//! The tokenizer (Hugging Face `tokenizers` crate) and what generation needs around it: the
//! stop ids, the chat template, and streaming decode.
//!
//! From a GGUF, the tokenizer is rebuilt as the Hugging Face `tokenizer.json` of Qwen2 would
//! describe it: byte-level BPE over `tokenizer.ggml.tokens`/`merges`, NFC normalisation, Qwen2's
//! pre-tokenizer split, and every token of type control (3) or user-defined (4) registered as an
//! added token (control ones as special).

use std::path::Path;

use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::error::{Error, Result};
use crate::gguf::Gguf;

/// Qwen2's pre-tokenizer split (`tokenizer.ggml.pre = qwen2`): contractions, letters, single
/// digits, punctuation runs, newlines, and whitespace not followed by a non-space.
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

pub struct Tokenizer {
    pub inner: tokenizers::Tokenizer,
    /// Generation stops at any of these.
    pub eos_ids: Vec<u32>,
    /// The model's Jinja chat template, if it ships one.
    pub chat_template: Option<String>,
}

impl Tokenizer {
    /// Builds the tokenizer from GGUF metadata.
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let bad = |msg: String| Error::invalid(&g.path, msg);
        let model = g.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(bad(format!("tokenizer.ggml.model is `{model}`; Qwen2 uses byte-level BPE (`gpt2`)")));
        }
        let strings = |key: &str| -> Result<Vec<&str>> {
            g.get(key)
                .and_then(|v| v.as_array())
                .ok_or_else(|| bad(format!("metadata `{key}` is missing or not an array")))?
                .iter()
                .map(|v| v.as_str().ok_or_else(|| bad(format!("metadata `{key}` holds a non-string"))))
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types: Vec<i64> = match g.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .as_array()
                .ok_or_else(|| bad("metadata `tokenizer.ggml.token_type` is not an array".into()))?
                .iter()
                .map(|v| {
                    v.as_i64().ok_or_else(|| bad("metadata `tokenizer.ggml.token_type` holds a non-integer".into()))
                })
                .collect::<Result<_>>()?,
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(bad(format!("{} tokens but {} token types", tokens.len(), types.len())));
        }

        // Built through the `tokenizers` API, not through a generated `tokenizer.json` text (4.8 MB
        // for the default model, written and parsed again): the same model and pipeline.
        let mut vocab = Vocab::with_capacity(tokens.len());
        let mut added = Vec::new();
        for (id, (&tok, &ty)) in tokens.iter().zip(&types).enumerate() {
            if vocab.insert(tok.to_string(), id as u32).is_some() {
                return Err(bad(format!("token `{tok}` appears twice in tokenizer.ggml.tokens")));
            }
            if ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED {
                added.push(AddedToken::from(tok, ty == TOKEN_TYPE_CONTROL).normalized(false));
            }
        }
        let merges = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| bad(format!("merge `{m}` in tokenizer.ggml.merges is not two tokens")))
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| bad(format!("cannot build the tokenizer from metadata: {e}")))?;
        let split = Split::new(SplitPattern::Regex(QWEN2_SPLIT.into()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| bad(format!("cannot build the pre-tokenizer: {e}")))?;
        let byte_level = ByteLevel::new(false, false, false); // no prefix space, no offset trimming, no regex
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner
            .with_normalizer(Some(NFC))
            .with_pre_tokenizer(Some(Sequence::new(vec![split.into(), byte_level.into()])))
            .with_post_processor(Some(byte_level))
            .with_decoder(Some(byte_level));
        inner.add_tokens(&added);

        let mut eos_ids = Vec::new();
        if let Some(id) = g.get("tokenizer.ggml.eos_token_id").and_then(|v| v.as_u64()) {
            eos_ids.push(id as u32);
        }
        let chat_template = g.get("tokenizer.chat_template").and_then(|v| v.as_str()).map(str::to_string);
        Ok(Self::finish(inner, eos_ids, chat_template))
    }

    /// Loads `tokenizer.json` (plus `tokenizer_config.json`, `generation_config.json` and
    /// `config.json` for the chat template and stop ids) from a Hugging Face model directory.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| Error::invalid(&path, format!("not a valid tokenizer.json: {e}")))?;
        let read_json = |name: &str| -> Option<serde_json::Value> {
            let text = std::fs::read_to_string(dir.join(name)).ok()?;
            serde_json::from_str(&text).ok()
        };
        let mut eos_ids = Vec::new();
        for name in ["generation_config.json", "config.json"] {
            if let Some(v) = read_json(name).and_then(|j| j.get("eos_token_id").cloned()) {
                match v {
                    serde_json::Value::Number(n) => eos_ids.extend(n.as_u64().map(|x| x as u32)),
                    serde_json::Value::Array(a) => {
                        eos_ids.extend(a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32))
                    }
                    _ => {}
                }
            }
        }
        let chat_template = std::fs::read_to_string(dir.join("chat_template.jinja"))
            .ok()
            .or_else(|| read_json("tokenizer_config.json")?.get("chat_template")?.as_str().map(str::to_string));
        Ok(Self::finish(inner, eos_ids, chat_template))
    }

    /// Adds Qwen's end-of-turn and end-of-text tokens to the stop ids (the instruct models end a
    /// reply with `<|im_end|>`; base models with `<|endoftext|>`).
    fn finish(inner: tokenizers::Tokenizer, mut eos_ids: Vec<u32>, chat_template: Option<String>) -> Self {
        for t in ["<|im_end|>", "<|endoftext|>"] {
            eos_ids.extend(inner.token_to_id(t));
        }
        eos_ids.sort_unstable();
        eos_ids.dedup();
        Tokenizer { inner, eos_ids, chat_template }
    }

    /// Token ids of `text`; special tokens written in the text (`<|im_start|>`) become their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc =
            self.inner.encode(text, false).map_err(|e| Error::Usage(format!("cannot tokenize the prompt: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| Error::Usage(format!("cannot decode tokens: {e}")))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// Turns a stream of token ids into a stream of text, holding back bytes that do not yet form
/// whole UTF-8 characters (a CJK character or an emoji can span several tokens).
pub struct StreamDecoder {
    ids: Vec<u32>,
    printed: usize,
}

impl StreamDecoder {
    pub fn new() -> Self {
        StreamDecoder { ids: Vec::new(), printed: 0 }
    }

    /// Adds a token; returns the new text that is now complete, if any.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let text = tok.decode(&self.ids)?;
        if text.ends_with('\u{FFFD}') || text.len() <= self.printed || !text.is_char_boundary(self.printed) {
            return Ok(None);
        }
        let new = text[self.printed..].to_string();
        self.printed = text.len();
        Ok(Some(new))
    }
}

impl Default for StreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}
