//! Safetensors shards of a Hugging Face checkpoint, memory-mapped: a tensor is a borrowed byte slice
//! until a consumer converts it, so loading an 8B model never reads whole files into RAM.

use super::{ConfigError, LlamaConfig};
use memmap2::Mmap;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a valid safetensors file: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{dir}: no *.safetensors files (and no model.safetensors.index.json)")]
    NoWeights { dir: PathBuf },
    #[error("{path}: tensor {name} has dtype {dtype}; only F32, F16 and BF16 checkpoints are supported")]
    Dtype { path: PathBuf, name: String, dtype: String },
    #[error("tensor {name} appears in both {first} and {second}")]
    Duplicate {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("{dir}: tensor {name} not found in the checkpoint")]
    MissingTensor { dir: PathBuf, name: String },
    #[error("{dir}: tensor {name} has shape {actual:?}, config.json implies {expected:?}")]
    Shape {
        dir: PathBuf,
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }
}

/// A tensor inside a mapped shard: little-endian elements in row-major (torch) order.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    pub name: &'a str,
    pub dtype: Dtype,
    pub shape: &'a [usize],
    pub data: &'a [u8],
}

impl TensorView<'_> {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The elements widened to f32 (exact for all three dtypes).
    pub fn to_f32(&self) -> Vec<f32> {
        match self.dtype {
            Dtype::F32 => self
                .data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => self
                .data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => self
                .data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        }
    }
}

struct Entry {
    shard: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Absolute byte range in the shard file.
    start: usize,
    end: usize,
}

struct Shard {
    path: PathBuf,
    map: Mmap,
}

/// An opened checkpoint folder: config plus every tensor, by HF name.
pub struct Checkpoint {
    dir: PathBuf,
    config: LlamaConfig,
    shards: Vec<Shard>,
    /// Sorted by name; `names_in_file_order` gives the converter's order.
    tensors: BTreeMap<String, Entry>,
}

impl Checkpoint {
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        let config = LlamaConfig::from_dir(dir)?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| CheckpointError::Io {
                path: dir.to_owned(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(CheckpointError::NoWeights { dir: dir.to_owned() });
        }
        let mut shards = Vec::with_capacity(files.len());
        let mut tensors = BTreeMap::new();
        for (idx, path) in files.into_iter().enumerate() {
            let file = File::open(&path).map_err(|source| CheckpointError::Io {
                path: path.clone(),
                source,
            })?;
            // SAFETY: the mapping is read-only; a checkpoint rewritten while we read it is outside our
            // contract (artifacts are written to a temporary name and renamed into place).
            let map = unsafe { Mmap::map(&file) }.map_err(|source| CheckpointError::Io {
                path: path.clone(),
                source,
            })?;
            for (name, entry) in parse_header(&path, &map, idx)? {
                if let Some(prev) = tensors.get(&name) {
                    let Entry { shard, .. } = prev;
                    return Err(CheckpointError::Duplicate {
                        name,
                        first: shards
                            .get(*shard)
                            .map_or_else(|| path.clone(), |s: &Shard| s.path.clone()),
                        second: path.clone(),
                    });
                }
                tensors.insert(name, entry);
            }
            shards.push(Shard { path, map });
        }
        Ok(Checkpoint {
            dir: dir.to_owned(),
            config,
            shards,
            tensors,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>, CheckpointError> {
        let (key, e) = self
            .tensors
            .get_key_value(name)
            .ok_or_else(|| CheckpointError::MissingTensor {
                dir: self.dir.clone(),
                name: name.to_owned(),
            })?;
        Ok(TensorView {
            name: key,
            dtype: e.dtype,
            shape: &e.shape,
            data: &self.shards[e.shard].map[e.start..e.end],
        })
    }

    /// Drops this process's resident pages of tensor `name` once a consumer has copied it out (the trainer
    /// loading into libtorch): the model is then not resident twice, once as mapped file pages and once as
    /// tensors. Later reads fault the bytes back in from the file. Best effort; unknown names are ignored.
    pub fn release(&self, name: &str) {
        let Some(e) = self.tensors.get(name) else { return };
        // SAFETY: the mapping is a read-only view of a file nobody rewrites while it is open (see `open`), so
        // MADV_DONTNEED only evicts pages: any later access, through views still alive included, reads the
        // same bytes from the file again. memmap2 widens the range to whole pages.
        let _ = unsafe {
            self.shards[e.shard].map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                e.start,
                e.end - e.start,
            )
        };
    }

    /// Names sorted as strings (`layers.10` before `layers.2`).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Names shard by shard (shards in file-name order), sorted within each: the order HF→GGUF converters use.
    pub fn names_in_file_order(&self) -> Vec<&str> {
        let mut names: Vec<(usize, &str)> = self.tensors.iter().map(|(n, e)| (e.shard, n.as_str())).collect();
        names.sort();
        names.into_iter().map(|(_, n)| n).collect()
    }

    /// Checks that every weight config.json implies is present with the implied shape.
    pub fn validate_shapes(&self) -> Result<(), CheckpointError> {
        for (name, expected) in self.config.expected_shapes() {
            let t = self.tensor(&name)?;
            if t.shape != expected.as_slice() {
                return Err(CheckpointError::Shape {
                    dir: self.dir.clone(),
                    name,
                    expected,
                    actual: t.shape.to_vec(),
                });
            }
        }
        Ok(())
    }
}

fn parse_header(path: &Path, map: &[u8], shard: usize) -> Result<Vec<(String, Entry)>, CheckpointError> {
    let format = |message: String| CheckpointError::Format {
        path: path.to_owned(),
        message,
    };
    let header_len = map
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| format("shorter than the 8-byte header length".into()))?;
    let header_end = usize::try_from(header_len)
        .ok()
        .and_then(|n| n.checked_add(8))
        .filter(|&end| end <= map.len())
        .ok_or_else(|| {
            format(format!(
                "header length {header_len} runs past the end of the file ({} bytes)",
                map.len()
            ))
        })?;
    let header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&map[8..header_end]).map_err(|e| format(format!("header is not JSON: {e}")))?;
    let mut out = Vec::with_capacity(header.len());
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = match info["dtype"].as_str() {
            Some("F32") => Dtype::F32,
            Some("F16") => Dtype::F16,
            Some("BF16") => Dtype::BF16,
            other => {
                return Err(CheckpointError::Dtype {
                    path: path.to_owned(),
                    name,
                    dtype: other.unwrap_or("(missing)").to_owned(),
                });
            }
        };
        let shape: Vec<usize> = info["shape"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                    .collect()
            })
            .ok_or_else(|| format(format!("tensor {name}: shape is not a list of sizes")))?;
        let offsets = info["data_offsets"]
            .as_array()
            .filter(|a| a.len() == 2)
            .and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)))
            .ok_or_else(|| format(format!("tensor {name}: data_offsets is not [begin, end]")))?;
        let bytes = shape
            .iter()
            .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format(format!("tensor {name}: shape {shape:?} overflows")))?;
        let start = usize::try_from(offsets.0).ok().and_then(|o| o.checked_add(header_end));
        let end = usize::try_from(offsets.1).ok().and_then(|o| o.checked_add(header_end));
        let (start, end) = match (start, end) {
            (Some(s), Some(e)) if s <= e && e <= map.len() && e - s == bytes => (s, e),
            _ => {
                return Err(format(format!(
                    "tensor {name}: data_offsets {offsets:?} do not hold {bytes} bytes inside the file"
                )));
            }
        };
        out.push((
            name,
            Entry {
                shard,
                dtype,
                shape,
                start,
                end,
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_file(dir: &Path, name: &str, header: &str, data: &[u8]) {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    fn tiny_config(dir: &Path) {
        std::fs::write(
            dir.join("config.json"),
            r#"{"architectures":["LlamaForCausalLM"],"hidden_size":2,"intermediate_size":2,"num_hidden_layers":1,
                "num_attention_heads":1,"vocab_size":2,"tie_word_embeddings":true}"#,
        )
        .unwrap();
    }

    #[test]
    fn reads_tensors_across_shards_and_rejects_bad_offsets() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        tiny_config(&dir);
        let one = 1.0f32.to_le_bytes();
        write_file(
            &dir,
            "a.safetensors",
            r#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            &one,
        );
        write_file(
            &dir,
            "b.safetensors",
            r#"{"y":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}"#,
            &[0x80, 0x3f],
        );
        let ck = Checkpoint::open(&dir).unwrap();
        assert_eq!(ck.tensor("x").unwrap().to_f32(), vec![1.0]);
        assert_eq!(ck.tensor("y").unwrap().to_f32(), vec![1.0]);
        assert_eq!(ck.names_in_file_order(), vec!["x", "y"]);
        assert!(matches!(
            ck.validate_shapes(),
            Err(CheckpointError::MissingTensor { .. })
        ));

        write_file(
            &dir,
            "b.safetensors",
            r#"{"y":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}}"#,
            &[0; 2],
        );
        let err = Checkpoint::open(&dir).err().unwrap().to_string();
        assert!(err.contains("b.safetensors") && err.contains("tensor y"), "{err}");
        write_file(
            &dir,
            "b.safetensors",
            r#"{"y":{"dtype":"I8","shape":[1],"data_offsets":[0,1]}}"#,
            &[0],
        );
        assert!(matches!(Checkpoint::open(&dir), Err(CheckpointError::Dtype { .. })));
        std::fs::write(dir.join("b.safetensors"), u64::MAX.to_le_bytes()).unwrap();
        assert!(matches!(Checkpoint::open(&dir), Err(CheckpointError::Format { .. })));
    }
}
