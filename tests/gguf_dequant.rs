//! Dequantisation against an independent element-by-element decoder (tests/gguf_util), on random
//! blocks of every supported type and many lengths, through the file reader.

mod gguf_util;

use ascend_cold::model::gguf::{dequant, GgmlType, GgufFile};
use gguf_util::{gt, random_blocks, reference_value, Writer};
use rand::{rngs::StdRng, SeedableRng};

const TYPES: &[(u32, GgmlType)] = &[
    (gt::F32, GgmlType::F32),
    (gt::F16, GgmlType::F16),
    (gt::BF16, GgmlType::BF16),
    (gt::Q8_0, GgmlType::Q8_0),
    (gt::Q4_0, GgmlType::Q4_0),
    (gt::Q4_1, GgmlType::Q4_1),
    (gt::Q5_0, GgmlType::Q5_0),
    (gt::Q5_1, GgmlType::Q5_1),
];

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[test]
fn every_supported_type_matches_the_reference_decoder() {
    let mut rng = StdRng::seed_from_u64(0x6767_7566);
    for &(id, ty) in TYPES {
        // Lengths below, at and well above one parallel chunk (32 Ki values), with a ragged tail.
        for blocks in [1usize, 2, 7, 1024, 1025, 4099] {
            let n = blocks * 32;
            let data = random_blocks(id, n, &mut rng);
            let mut w = Writer::default();
            // A [rows, 32] tensor; GGUF dims innermost first.
            w.tensor("t", &[32, blocks as u64], id, data.clone());
            let f = GgufFile::from_bytes("random.gguf", w.bytes()).unwrap();
            let info = &f.tensors()[0];
            assert_eq!(info.ggml_type, ty);
            assert_eq!(info.shape(), vec![blocks, 32]);
            let got = f.dequantize(info).unwrap();
            assert_eq!(got.len(), n);
            for (k, &g) in got.iter().enumerate() {
                let want = reference_value(id, &data, k);
                assert!(same(g, want), "{ty} value {k} of {n}: got {g}, want {want}");
            }
        }
    }
}

#[test]
fn known_values_decode_as_the_layout_says() {
    // Q4_1 block: d = 0.5, m = -1.0, qs[0] = 0x21 -> value 0 = 1*0.5-1 = -0.5, value 16 = 2*0.5-1 = 0.
    let mut block = Vec::new();
    block.extend_from_slice(&half::f16::from_f32(0.5).to_bits().to_le_bytes());
    block.extend_from_slice(&half::f16::from_f32(-1.0).to_bits().to_le_bytes());
    block.push(0x21);
    block.extend_from_slice(&[0xf0; 15]);
    let mut out = vec![f32::NAN; 32];
    dequant::dequantize_into(GgmlType::Q4_1, &block, &mut out).unwrap();
    assert_eq!(out[0], -0.5);
    assert_eq!(out[16], 0.0);
    assert_eq!(out[1], -1.0); // low nibble 0
    assert_eq!(out[17], 6.5); // high nibble 15

    // Q4_0: d = 2, qs[3] = 0x9f -> value 3 = (15-8)*2 = 14, value 19 = (9-8)*2 = 2.
    let mut block = half::f16::from_f32(2.0).to_bits().to_le_bytes().to_vec();
    block.extend_from_slice(&[0x88; 16]);
    block[2 + 3] = 0x9f;
    let mut out = vec![f32::NAN; 32];
    dequant::dequantize_into(GgmlType::Q4_0, &block, &mut out).unwrap();
    assert_eq!(out[3], 14.0);
    assert_eq!(out[19], 2.0);
    assert_eq!(out[0], 0.0);

    // Q8_0: d = 0.25, qs = -128..
    let mut block = half::f16::from_f32(0.25).to_bits().to_le_bytes().to_vec();
    block.extend((0..32).map(|i| (i as i8 - 16) as u8));
    block[2] = 0x80;
    let mut out = vec![f32::NAN; 32];
    dequant::dequantize_into(GgmlType::Q8_0, &block, &mut out).unwrap();
    assert_eq!(out[0], -32.0);
    assert_eq!(out[31], 3.75);
}

#[test]
fn unsupported_type_and_wrong_sizes_are_errors() {
    let mut out = vec![0f32; 256];
    let e = dequant::dequantize_into(GgmlType::Q4_K, &[0; 144], &mut out).unwrap_err();
    assert!(e.contains("Q4_K") && e.contains("supported: F32"), "{e}");
    let e = dequant::dequantize_into(GgmlType::Q8_0, &[0; 33], &mut out[..32]).unwrap_err();
    assert!(e.contains("33 bytes"), "{e}");
    let e = dequant::dequantize_into(GgmlType::Q8_0, &[0; 34], &mut out[..31]).unwrap_err();
    assert!(e.contains("31 values"), "{e}");
}
