//! The GGUF reader on files it must reject — truncated, oversized counts, overflowing sizes, misaligned
//! or overlapping data — and on a round trip through the writer. Every rejection is an error, never a panic.

use fireweave_ai::gguf::file::{Array, TensorInfo, Value, Writer, encode_header};
use fireweave_ai::gguf::{GgmlType, Gguf, MappedGguf};

fn sample() -> Vec<u8> {
    let kv = vec![
        ("general.architecture".to_owned(), Value::String("llama".into())),
        ("x.count".to_owned(), Value::U32(7)),
        (
            "x.list".to_owned(),
            Value::Array(Array::String(vec!["a".into(), "b c".into()])),
        ),
        ("x.f".to_owned(), Value::Array(Array::F32(vec![1.5, -2.0]))),
    ];
    let mut tensors = vec![
        TensorInfo {
            name: "a".into(),
            dims: vec![64, 2],
            ggml_type: GgmlType::Q8_0,
            offset: 0,
        },
        TensorInfo {
            name: "b".into(),
            dims: vec![3],
            ggml_type: GgmlType::F32,
            offset: 0,
        },
    ];
    let mut out = encode_header(&kv, &mut tensors);
    let mut q = vec![0u8; 4 * 34];
    fireweave_ai::gguf::quants::quantize_row_q8_0(&(0..128).map(|i| i as f32 / 10.0).collect::<Vec<_>>(), &mut q);
    out.extend_from_slice(&q);
    out.resize(out.len().div_ceil(32) * 32, 0);
    out.extend_from_slice(&[1.0f32, 2.0, 3.0].map(f32::to_le_bytes).concat());
    out.resize(out.len().div_ceil(32) * 32, 0);
    out
}

fn err(bytes: &[u8]) -> String {
    match Gguf::parse(bytes) {
        Ok(_) => panic!("a hostile file was accepted"),
        Err(e) => e.to_string(),
    }
}

/// Byte position of the `n`th tensor info's fields, found by parsing the good file.
fn tensor_info_pos(bytes: &[u8], name: &str) -> usize {
    let needle = [&(name.len() as u64).to_le_bytes()[..], name.as_bytes()].concat();
    let at = bytes
        .windows(needle.len())
        .rposition(|w| w == needle.as_slice())
        .expect("tensor name in header");
    at + needle.len()
}

#[test]
fn round_trip_values_and_data() {
    let bytes = sample();
    let g = Gguf::parse(&bytes).expect("our own file parses");
    assert_eq!(g.get("x.count"), Some(&Value::U32(7)));
    assert_eq!(
        g.get("x.list"),
        Some(&Value::Array(Array::String(vec!["a".into(), "b c".into()])))
    );
    let b = g.tensor("b").expect("tensor b");
    assert_eq!(g.dequantize(b), vec![1.0, 2.0, 3.0]);
    let a = g.dequantize(g.tensor("a").expect("tensor a"));
    assert!((a[100] - 10.0).abs() < 0.05, "{}", a[100]);
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = sample();
    for len in 0..bytes.len() - 1 {
        // Dropping only trailing padding of the last tensor is tolerated; anything shorter must fail.
        if len >= bytes.len() - 20 {
            continue;
        }
        let e = err(&bytes[..len]);
        assert!(e.contains("truncated") || e.contains("byte"), "len {len}: {e}");
    }
}

#[test]
fn oversized_counts_are_refused_before_allocating() {
    let mut b = sample();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(err(&b).contains("tensor count"), "{}", err(&b));
    let mut b = sample();
    b[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(err(&b).contains("metadata count"), "{}", err(&b));
    // The string array's count.
    let mut b = sample();
    let key = b"x.list";
    let at = b.windows(key.len()).position(|w| w == key).expect("key") + key.len() + 4 + 4;
    b[at..at + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    let e = err(&b);
    assert!(e.contains("x.list") && e.contains("cannot fit"), "{e}");
    // A string length.
    let mut b = sample();
    let at = 24;
    b[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(err(&b).contains("limit"), "{}", err(&b));
}

#[test]
fn overflowing_dims_misaligned_offsets_and_bad_types_are_refused() {
    let good = sample();
    let p = tensor_info_pos(&good, "a");
    // n_dims then dims: make the product overflow u64.
    let mut b = good.clone();
    b[p + 4..p + 12].copy_from_slice(&(1u64 << 40).to_le_bytes());
    b[p + 12..p + 20].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let e = err(&b);
    assert!(e.contains("overflow") || e.contains("truncated"), "{e}");
    // Row length not a whole number of Q8_0 blocks.
    let mut b = good.clone();
    b[p + 4..p + 12].copy_from_slice(&65u64.to_le_bytes());
    assert!(err(&b).contains("block size"), "{}", err(&b));
    // Unknown tensor type.
    let mut b = good.clone();
    b[p + 20..p + 24].copy_from_slice(&99u32.to_le_bytes());
    assert!(err(&b).contains("type id 99"), "{}", err(&b));
    // Too many dimensions.
    let mut b = good.clone();
    b[p..p + 4].copy_from_slice(&9u32.to_le_bytes());
    assert!(err(&b).contains("dimensions"), "{}", err(&b));
    // Second tensor's offset not where the first one's padded data ends (misaligned / overlapping).
    let q = tensor_info_pos(&good, "b");
    for bad in [1u64, 32, u64::MAX - 3] {
        let mut b = good.clone();
        b[q + 16..q + 24].copy_from_slice(&bad.to_le_bytes());
        assert!(err(&b).contains("offset"), "offset {bad}: {}", err(&b));
    }
    // Bad magic, version, alignment.
    let mut b = good.clone();
    b[0] = b'X';
    assert!(err(&b).contains("not a GGUF"));
    let mut b = good.clone();
    b[4] = 2;
    assert!(err(&b).contains("version 2"));
}

#[test]
fn non_power_of_two_alignment_is_refused() {
    let kv = vec![("general.alignment".to_owned(), Value::U32(24))];
    let bytes = encode_header(&kv, &mut []);
    assert!(err(&bytes).contains("power-of-two"), "{}", err(&bytes));
}

#[test]
fn garbage_never_panics() {
    // Cheap in-test fuzzing: flip bytes of a valid file at every header position.
    let good = sample();
    let header_len = tensor_info_pos(&good, "b") + 24;
    for i in 0..header_len {
        for v in [0u8, 0xff, 0x80, 1] {
            let mut b = good.clone();
            b[i] = v;
            let _ = Gguf::parse(&b);
        }
    }
}

#[test]
fn writer_renames_into_place_and_hashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.gguf");
    let mut tensors = vec![TensorInfo {
        name: "t".into(),
        dims: vec![4],
        ggml_type: GgmlType::F32,
        offset: 0,
    }];
    let header = encode_header(&[], &mut tensors);
    let mut w = Writer::create(&path, &header).expect("create");
    assert!(!path.exists(), "the final name appears only after finish");
    w.data(&[0u8; 16]).expect("data");
    w.end_tensor().expect("pad");
    let (size, sha) = w.finish().expect("finish");
    let bytes = std::fs::read(&path).expect("read");
    assert_eq!(size, bytes.len() as u64);
    use sha2::Digest;
    assert_eq!(sha, hex::encode(sha2::Sha256::digest(&bytes)));
    let m = MappedGguf::open(&path).expect("open");
    assert_eq!(m.parse().expect("parse").tensors.len(), 1);
}
