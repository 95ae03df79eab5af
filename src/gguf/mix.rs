//! Which tensor type each tensor gets under a file type ("mix"), following llama.cpp's
//! `llama_tensor_get_type` for the mixes we write. Pure functions of names and shapes.

use super::types::GgmlType;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mix {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4KM,
    Q5KM,
}

impl Mix {
    pub const ALL: [Mix; 6] = [Mix::F32, Mix::F16, Mix::BF16, Mix::Q8_0, Mix::Q4KM, Mix::Q5KM];

    pub fn name(self) -> &'static str {
        match self {
            Mix::F32 => "F32",
            Mix::F16 => "F16",
            Mix::BF16 => "BF16",
            Mix::Q8_0 => "Q8_0",
            Mix::Q4KM => "Q4_K_M",
            Mix::Q5KM => "Q5_K_M",
        }
    }

    pub fn parse(s: &str) -> Option<Mix> {
        Self::ALL.into_iter().find(|m| m.name().eq_ignore_ascii_case(s))
    }

    /// `general.file_type` (llama_ftype).
    pub fn file_type(self) -> u32 {
        match self {
            Mix::F32 => 0,
            Mix::F16 => 1,
            Mix::Q8_0 => 7,
            Mix::Q4KM => 15,
            Mix::Q5KM => 17,
            Mix::BF16 => 32,
        }
    }

    pub fn default_type(self) -> GgmlType {
        match self {
            Mix::F32 => GgmlType::F32,
            Mix::F16 => GgmlType::F16,
            Mix::BF16 => GgmlType::BF16,
            Mix::Q8_0 => GgmlType::Q8_0,
            Mix::Q4KM => GgmlType::Q4K,
            Mix::Q5KM => GgmlType::Q5K,
        }
    }

    /// Quantized mixes are produced by llama-quantize in llama.cpp; the float ones by the converter.
    pub fn is_quantized(self) -> bool {
        self.default_type().is_quantized()
    }
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// llama.cpp's heuristic for the layers that get more bits: the first and last eighth, and every third
/// layer in between.
pub fn use_more_bits(i_layer: usize, n_layers: usize) -> bool {
    let (i, n) = (i_layer as i64, n_layers as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// `blk.N.` → N.
pub fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// Only ≥2-D tensors named `*weight` that are not norms get quantized; the rest keep F32.
pub fn is_quantizable(name: &str, n_dims: usize) -> bool {
    n_dims >= 2 && name.ends_with("weight") && !name.contains("_norm.weight")
}

/// Type for a tensor: `row_len` is the GGUF first dimension, `tied` means there is no output.weight.
pub fn tensor_type(mix: Mix, name: &str, n_dims: usize, row_len: u64, n_layers: usize, tied: bool) -> GgmlType {
    if !is_quantizable(name, n_dims) {
        return GgmlType::F32;
    }
    let default = mix.default_type();
    if !mix.is_quantized() {
        return default;
    }
    let is_output = name == "output.weight" || (tied && name == "token_embd.weight");
    let more_bits = || layer_of(name).is_some_and(|i| use_more_bits(i, n_layers));
    let mut t = default;
    if is_output {
        if !row_len.is_multiple_of(default.block_size() as u64) {
            t = GgmlType::Q8_0;
        } else if default != GgmlType::Q8_0 {
            t = GgmlType::Q6K;
        }
    } else if (name.contains("attn_v.weight") || name.contains("ffn_down"))
        && matches!(mix, Mix::Q4KM | Mix::Q5KM)
        && more_bits()
    {
        t = GgmlType::Q6K;
    }
    fallback(t, row_len)
}

/// Rows that are not a whole number of blocks: step down to a 32-value type, then to F16.
pub fn fallback(t: GgmlType, row_len: u64) -> GgmlType {
    if row_len.is_multiple_of(t.block_size() as u64) {
        return t;
    }
    let next = match t {
        GgmlType::Q4K => GgmlType::Q5_0,
        GgmlType::Q5K => GgmlType::Q5_1,
        GgmlType::Q6K => GgmlType::Q8_0,
        other => other,
    };
    if row_len.is_multiple_of(next.block_size() as u64) {
        next
    } else {
        GgmlType::F16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_bits_layers_for_32() {
        let picked: Vec<usize> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        assert_eq!(picked, vec![0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
    }

    #[test]
    fn llama_8b_q4_k_m_choices() {
        let t = |name: &str, row: u64| tensor_type(Mix::Q4KM, name, 2, row, 32, false);
        assert_eq!(t("output.weight", 4096), GgmlType::Q6K);
        assert_eq!(t("token_embd.weight", 4096), GgmlType::Q4K);
        assert_eq!(t("blk.0.attn_v.weight", 4096), GgmlType::Q6K);
        assert_eq!(t("blk.4.attn_v.weight", 4096), GgmlType::Q4K);
        assert_eq!(t("blk.6.ffn_down.weight", 14336), GgmlType::Q6K);
        assert_eq!(t("blk.7.ffn_down.weight", 14336), GgmlType::Q4K);
        assert_eq!(
            tensor_type(Mix::Q4KM, "blk.0.attn_norm.weight", 1, 4096, 32, false),
            GgmlType::F32
        );
        assert_eq!(
            tensor_type(Mix::Q8_0, "output.weight", 2, 4096, 32, false),
            GgmlType::Q8_0
        );
    }

    #[test]
    fn rows_not_divisible_by_256_fall_back() {
        // SmolLM2: hidden 576, tied embeddings.
        let t = |mix, name: &str, row| tensor_type(mix, name, 2, row, 30, true);
        assert_eq!(t(Mix::Q4KM, "token_embd.weight", 576), GgmlType::Q8_0);
        assert_eq!(t(Mix::Q4KM, "blk.5.attn_q.weight", 576), GgmlType::Q5_0);
        assert_eq!(t(Mix::Q5KM, "blk.5.attn_q.weight", 576), GgmlType::Q5_1);
        assert_eq!(t(Mix::Q4KM, "blk.0.attn_v.weight", 576), GgmlType::Q8_0);
        assert_eq!(t(Mix::Q4KM, "blk.0.ffn_down.weight", 1536), GgmlType::Q6K);
        assert_eq!(fallback(GgmlType::Q4K, 100), GgmlType::F16);
        assert_eq!(fallback(GgmlType::Q8_0, 48), GgmlType::F16);
    }
}
