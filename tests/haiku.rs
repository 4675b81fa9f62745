//! The instruction-following test the old engine failed: the real model, on the CPU, through the
//! chat template, must write a haiku about GPU computing containing the English word for the
//! current minute. Greedy first; if the word is missing, up to 8 seeded samples
//! (temperature 0.7, top-p 0.9). Every attempt is printed.

mod common;

use common::minute_word;
use qwen_rs::chat::{Message, render};
use qwen_rs::cpu::CpuEngine;
use qwen_rs::generate::generate;
use qwen_rs::sampling::{Sampler, SamplingParams};

#[test]
fn minute_words() {
    assert_eq!(minute_word(0), "zero");
    assert_eq!(minute_word(13), "thirteen");
    assert_eq!(minute_word(30), "thirty");
    assert_eq!(minute_word(42), "forty-two");
    assert_eq!(minute_word(59), "fifty-nine");
}

#[test]
fn haiku_contains_the_word_for_the_current_minute() {
    let loaded = qwen_rs::load(&common::real_model()).unwrap();
    let mut engine = CpuEngine::new(loaded.config.clone(), loaded.weights.clone(), 512);
    common::haiku_test(&mut engine, &loaded.tokenizer);
}

/// Greedy haiku for every minute word: how many include their word. The reference float32
/// implementation scores 52 of 60 (its misses are 42–49). Slow (60 generations): run by hand with
/// `cargo test --release --test haiku -- --ignored --nocapture`.
#[test]
#[ignore = "slow: 60 generations; run by hand"]
fn greedy_haiku_over_all_minutes() {
    let loaded = qwen_rs::load(&common::real_model()).unwrap();
    let mut engine = CpuEngine::new(loaded.config.clone(), loaded.weights, 512);
    let mut misses = Vec::new();
    for m in 0..60 {
        let word = minute_word(m);
        let prompt = format!("Write a haiku about GPU computing that includes the word \"{word}\".");
        let text = render(loaded.tokenizer.chat_template.as_deref(), &[Message::new("user", &prompt)]).unwrap();
        let ids = loaded.tokenizer.encode(&text).unwrap();
        let mut sampler = Sampler::new(SamplingParams { temperature: 0.0, ..Default::default() }).unwrap();
        let (out, _) = generate(&mut engine, &loaded.tokenizer, &ids, 80, &mut sampler, |_| Ok(())).unwrap();
        let haiku = loaded.tokenizer.decode(&out).unwrap();
        if !haiku.to_lowercase().contains(&word) {
            misses.push(m);
        }
        println!("{m:2} {word}: {}", haiku.replace('\n', " / "));
    }
    println!("greedy hits: {} of 60; misses at minutes {misses:?}", 60 - misses.len());
    assert!(misses.len() <= 8, "misses at {misses:?}");
}
