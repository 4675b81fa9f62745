//! The tokenizer qwen-rs builds from the real model's GGUF metadata against the Hugging Face
//! tokenizer that transformers builds from the same GGUF (tests/fixtures/tokenizer_ids.json, made by
//! scripts/fixtures/make_tokenizer_fixture.py), and the decode(encode(s)) == s round trip.

mod common;

use qwen_rs::gguf::Gguf;
use qwen_rs::tokenizer::{StreamDecoder, Tokenizer};
use unicode_normalization::UnicodeNormalization;

fn tokenizer() -> Tokenizer {
    Tokenizer::from_gguf(&Gguf::open(&common::real_model()).unwrap()).unwrap()
}

#[test]
fn gguf_tokenizer_matches_hugging_face_and_round_trips() {
    let tok = tokenizer();
    let text = std::fs::read_to_string(common::fixture("tokenizer_ids.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    assert!(cases.iter().any(|c| c["text"].as_str().unwrap().nfc().collect::<String>() != c["text"].as_str().unwrap()));
    for case in cases {
        let s = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        let got = tok.encode(s).unwrap();
        assert_eq!(got, want, "ids differ for {s:?}");
        // The tokenizer normalises to NFC (as Qwen2's tokenizer.json does), so the round trip is
        // exact for NFC text and gives the NFC form otherwise (one fixture case is decomposed).
        let nfc: String = s.nfc().collect();
        assert_eq!(tok.decode(&got).unwrap(), nfc, "round trip of {s:?}");
    }
}

#[test]
fn special_tokens_and_stop_ids() {
    let tok = tokenizer();
    assert_eq!(tok.encode("<|im_start|>").unwrap(), vec![151644]);
    assert_eq!(tok.encode("<|im_end|>").unwrap(), vec![151645]);
    assert_eq!(tok.encode("<|endoftext|>").unwrap(), vec![151643]);
    assert_eq!(tok.eos_ids, vec![151643, 151645]);
    let template = tok.chat_template.as_deref().expect("the GGUF ships a chat template");
    let prompt = qwen_rs::chat::render(Some(template), &[qwen_rs::chat::Message::new("user", "Hi")]).unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(prompt, qwen_rs::chat::chatml(&[qwen_rs::chat::Message::new("user", "Hi")]));
}

#[test]
fn streaming_decode_holds_back_partial_characters() {
    let tok = tokenizer();
    let s = "数据🦀 ok";
    let ids = tok.encode(s).unwrap();
    let mut stream = StreamDecoder::new();
    let mut out = String::new();
    for &id in &ids {
        if let Some(piece) = stream.push(&tok, id).unwrap() {
            assert!(!piece.contains('\u{FFFD}'), "partial character emitted in {piece:?}");
            out.push_str(&piece);
        }
    }
    assert_eq!(out, s);
}
