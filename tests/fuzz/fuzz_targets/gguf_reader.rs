//! Any byte string given to the GGUF reader yields a parsed file or an error, never a panic, an
//! out-of-bounds read or an allocation sized by an unchecked header field; every tensor of a file it accepts
//! dequantizes.
#![no_main]

use fireweave_ai::gguf::Gguf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = Gguf::parse(data) {
        for t in &g.tensors {
            let values = g.dequantize(t);
            assert_eq!(values.len() as u64, t.dims.iter().product::<u64>(), "{}", t.name);
        }
        let _ = fireweave_ai::gguf::cli::render_inspect(&g, true);
    }
});
