//! Each GGUF tensor type against the `gguf` Python package's dequantisation of the same bytes
//! (real blocks of the default model for the quantised types). Fixture: tests/fixtures/dequant.json,
//! made by scripts/fixtures/make_quant_fixture.py.

mod common;

use qwen_rs::quant::{GgmlType, dequantize};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn every_type_matches_gguf_py_bit_for_bit() {
    let text = std::fs::read_to_string(common::fixture("dequant.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let types = [
        ("F32", GgmlType::F32),
        ("F16", GgmlType::F16),
        ("BF16", GgmlType::BF16),
        ("Q8_0", GgmlType::Q8_0),
        ("Q5_0", GgmlType::Q5_0),
        ("Q4_K", GgmlType::Q4K),
        ("Q6_K", GgmlType::Q6K),
    ];
    for (name, ty) in types {
        let case = &v["types"][name];
        let raw = hex(case["hex"].as_str().unwrap());
        let want: Vec<f32> = case["values"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        let mut got = vec![f32::NAN; want.len()];
        dequantize(ty, &raw, &mut got);
        let mismatches = got.iter().zip(&want).filter(|(g, w)| g.to_bits() != w.to_bits()).count();
        assert_eq!(mismatches, 0, "{name}: {mismatches} of {} values differ from gguf-py", want.len());
        assert!(want.iter().any(|&x| x != 0.0), "{name}: fixture is all zeros");
    }
}
