//! GGUF v3 container: metadata values, tensor infos, a hardened reader over a byte slice (usually a
//! memory map) and a streaming writer. The reader trusts nothing in the header: every count is bounded by
//! the bytes that remain, every size and offset is overflow-checked, and nothing is allocated from a
//! header field before the bytes it describes are known to exist.

use super::types::GgmlType;
use std::io::Write;

pub const MAGIC: &[u8; 4] = b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's limit on tensor dimensions.
pub const MAX_DIMS: usize = 4;
/// Longest key or string value we accept (a chat template is tens of KiB; this leaves ample room).
const MAX_STRING: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
#[error("byte {offset}: {message}")]
pub struct FormatError {
    pub offset: u64,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Array(Array),
}

/// Arrays are homogeneous; nested arrays are not used by llama.cpp and are refused.
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

impl Array {
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn type_id(&self) -> u32 {
        match self {
            Array::U8(_) => T_U8,
            Array::I8(_) => T_I8,
            Array::U16(_) => T_U16,
            Array::I16(_) => T_I16,
            Array::U32(_) => T_U32,
            Array::I32(_) => T_I32,
            Array::F32(_) => T_F32,
            Array::Bool(_) => T_BOOL,
            Array::String(_) => T_STRING,
            Array::U64(_) => T_U64,
            Array::I64(_) => T_I64,
            Array::F64(_) => T_F64,
        }
    }
}

impl Value {
    fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => T_U8,
            Value::I8(_) => T_I8,
            Value::U16(_) => T_U16,
            Value::I16(_) => T_I16,
            Value::U32(_) => T_U32,
            Value::I32(_) => T_I32,
            Value::F32(_) => T_F32,
            Value::Bool(_) => T_BOOL,
            Value::String(_) => T_STRING,
            Value::Array(_) => T_ARRAY,
            Value::U64(_) => T_U64,
            Value::I64(_) => T_I64,
            Value::F64(_) => T_F64,
        }
    }

    /// Any integer type widened, for readers that do not care how a count was stored.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A short human rendering: scalars in full, long strings and arrays abbreviated.
    pub fn summary(&self) -> String {
        fn clip(s: &str) -> String {
            let one_line = s.replace('\n', "\\n");
            if one_line.chars().count() > 60 {
                format!("{:?}…", one_line.chars().take(60).collect::<String>())
            } else {
                format!("{one_line:?}")
            }
        }
        match self {
            Value::String(s) => clip(s),
            Value::Array(a) => {
                let head = match a {
                    Array::String(v) => v.iter().take(3).map(|s| clip(s)).collect::<Vec<_>>().join(", "),
                    Array::I32(v) => v.iter().take(3).map(|x| x.to_string()).collect::<Vec<_>>().join(", "),
                    Array::U32(v) => v.iter().take(3).map(|x| x.to_string()).collect::<Vec<_>>().join(", "),
                    Array::F32(v) => v.iter().take(3).map(|x| x.to_string()).collect::<Vec<_>>().join(", "),
                    _ => String::new(),
                };
                let more = if a.len() > 3 { ", …" } else { "" };
                format!("[{head}{more}] ({} items)", a.len())
            }
            Value::U8(v) => v.to_string(),
            Value::I8(v) => v.to_string(),
            Value::U16(v) => v.to_string(),
            Value::I16(v) => v.to_string(),
            Value::U32(v) => v.to_string(),
            Value::I32(v) => v.to_string(),
            Value::F32(v) => v.to_string(),
            Value::Bool(v) => v.to_string(),
            Value::U64(v) => v.to_string(),
            Value::I64(v) => v.to_string(),
            Value::F64(v) => v.to_string(),
        }
    }
}

/// One tensor's header entry. `dims` are in GGUF order: the row length first.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Relative to the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Bytes of the tensor's data (callers of the reader get an already-checked value).
    pub fn n_bytes(&self) -> u64 {
        let row = self.dims.first().copied().unwrap_or(1);
        let rows: u64 = self.dims.iter().skip(1).product();
        self.ggml_type.row_bytes(row).unwrap_or(0) * rows
    }
}

pub fn align_up(x: u64, alignment: u64) -> Option<u64> {
    x.checked_add(alignment - 1).map(|v| v / alignment * alignment)
}

// ------------------------------------------------------------------------------------------- reader

/// A parsed GGUF file borrowing its tensor data from `bytes`.
#[derive(Debug)]
pub struct Gguf<'a> {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    bytes: &'a [u8],
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, message: impl Into<String>) -> FormatError {
        FormatError {
            offset: self.pos as u64,
            message: message.into(),
        }
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], FormatError> {
        if n > self.remaining() {
            return Err(self.err(format!(
                "truncated: {what} needs {n} bytes, {} remain",
                self.remaining()
            )));
        }
        let s = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], FormatError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String, FormatError> {
        let at = self.pos;
        let len = self.u64(what)?;
        if len > MAX_STRING {
            return Err(FormatError {
                offset: at as u64,
                message: format!("{what}: string length {len} exceeds the {MAX_STRING}-byte limit"),
            });
        }
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| FormatError {
            offset: at as u64,
            message: format!("{what}: string is not valid UTF-8"),
        })
    }

    /// A count of elements of at least `min_size` bytes each, refused if the file cannot hold them.
    fn count(&mut self, min_size: u64, what: &str) -> Result<usize, FormatError> {
        let at = self.pos;
        let n = self.u64(what)?;
        if n.checked_mul(min_size).is_none_or(|need| need > self.remaining()) {
            return Err(FormatError {
                offset: at as u64,
                message: format!(
                    "{what}: count {n} cannot fit in the {} bytes that remain",
                    self.remaining()
                ),
            });
        }
        Ok(n as usize)
    }

    fn scalar(&mut self, ty: u32, what: &str) -> Result<Value, FormatError> {
        Ok(match ty {
            T_U8 => Value::U8(self.array::<1>(what)?[0]),
            T_I8 => Value::I8(self.array::<1>(what)?[0] as i8),
            T_U16 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            T_I16 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            T_U32 => Value::U32(self.u32(what)?),
            T_I32 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            T_F32 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            T_BOOL => {
                let b = self.array::<1>(what)?[0];
                if b > 1 {
                    return Err(self.err(format!("{what}: bool byte is {b}, not 0 or 1")));
                }
                Value::Bool(b == 1)
            }
            T_STRING => Value::String(self.string(what)?),
            T_U64 => Value::U64(self.u64(what)?),
            T_I64 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            T_F64 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            other => return Err(self.err(format!("{what}: unknown value type {other}"))),
        })
    }

    fn value(&mut self, what: &str) -> Result<Value, FormatError> {
        let ty = self.u32(what)?;
        if ty != T_ARRAY {
            return self.scalar(ty, what);
        }
        let ety = self.u32(what)?;
        let min_size = match ety {
            T_U8 | T_I8 | T_BOOL => 1,
            T_U16 | T_I16 => 2,
            T_U32 | T_I32 | T_F32 => 4,
            T_U64 | T_I64 | T_F64 | T_STRING => 8,
            T_ARRAY => return Err(self.err(format!("{what}: nested arrays are not supported"))),
            other => return Err(self.err(format!("{what}: unknown array element type {other}"))),
        };
        let n = self.count(min_size, what)?;
        macro_rules! collect {
            ($variant:ident, $pat:ident) => {{
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    match self.scalar(ety, what)? {
                        Value::$pat(x) => v.push(x),
                        _ => unreachable!("scalar() returns the requested type"),
                    }
                }
                Array::$variant(v)
            }};
        }
        Ok(Value::Array(match ety {
            T_U8 => collect!(U8, U8),
            T_I8 => collect!(I8, I8),
            T_U16 => collect!(U16, U16),
            T_I16 => collect!(I16, I16),
            T_U32 => collect!(U32, U32),
            T_I32 => collect!(I32, I32),
            T_F32 => collect!(F32, F32),
            T_BOOL => collect!(Bool, Bool),
            T_STRING => collect!(String, String),
            T_U64 => collect!(U64, U64),
            T_I64 => collect!(I64, I64),
            _ => collect!(F64, F64),
        }))
    }
}

impl<'a> Gguf<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let mut c = Cursor { bytes, pos: 0 };
        let magic = c.array::<4>("magic")?;
        if &magic != MAGIC {
            return Err(FormatError {
                offset: 0,
                message: format!("not a GGUF file (magic {magic:02x?})"),
            });
        }
        let version = c.u32("version")?;
        if version != 3 {
            return Err(FormatError {
                offset: 4,
                message: format!("GGUF version {version}; only version 3 is supported"),
            });
        }
        // Minimum encoded sizes bound the counts: a tensor info is at least 8+4+4+8 bytes, a KV 8+4+1.
        let n_tensors = c.count(24, "tensor count")?;
        let n_kv = c.count(13, "metadata count")?;
        let mut metadata = Vec::with_capacity(n_kv);
        let mut alignment = DEFAULT_ALIGNMENT;
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key #{i}"))?;
            if metadata.iter().any(|(k, _)| *k == key) {
                return Err(c.err(format!("metadata key {key:?} appears twice")));
            }
            let at = c.pos;
            let value = c.value(&format!("metadata {key:?}"))?;
            if key == "general.alignment" {
                alignment = match value {
                    Value::U32(a) if a.is_power_of_two() => a.into(),
                    ref other => {
                        return Err(FormatError {
                            offset: at as u64,
                            message: format!("general.alignment must be a power-of-two u32, found {other:?}"),
                        });
                    }
                };
            }
            metadata.push((key, value));
        }
        let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors);
        let mut expected_offset = 0u64;
        for i in 0..n_tensors {
            let at = c.pos as u64;
            let name = c.string(&format!("tensor #{i} name"))?;
            let bad = |message: String| FormatError {
                offset: at,
                message: format!("tensor {name:?}: {message}"),
            };
            if tensors.iter().any(|t| t.name == name) {
                return Err(bad("name appears twice".into()));
            }
            let n_dims = c.u32("n_dims")? as usize;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(bad(format!("{n_dims} dimensions (1 to {MAX_DIMS} allowed)")));
            }
            let mut dims = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                dims.push(c.u64("dimension")?);
            }
            let type_id = c.u32("tensor type")?;
            let ggml_type =
                GgmlType::from_id(type_id).ok_or_else(|| bad(format!("unsupported tensor type id {type_id}")))?;
            let offset = c.u64("tensor offset")?;
            if dims.iter().any(|&d| d == 0 || d > i64::MAX as u64) {
                return Err(bad(format!("dimension out of range in {dims:?}")));
            }
            let rows = dims[1..].iter().try_fold(1u64, |a, &d| a.checked_mul(d));
            let row = ggml_type.row_bytes(dims[0]).ok_or_else(|| {
                bad(format!(
                    "row length {} is not a multiple of the {} block size {}",
                    dims[0],
                    ggml_type,
                    ggml_type.block_size()
                ))
            })?;
            let size = rows
                .and_then(|r| r.checked_mul(row))
                .ok_or_else(|| bad(format!("size of {dims:?} overflows")))?;
            if offset != expected_offset {
                return Err(bad(format!(
                    "data offset {offset} but the tensors before it end at {expected_offset} (data must be packed in order)"
                )));
            }
            expected_offset = offset
                .checked_add(size)
                .and_then(|e| align_up(e, alignment))
                .ok_or_else(|| bad("data end overflows".into()))?;
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }
        let data_offset = align_up(c.pos as u64, alignment).ok_or_else(|| c.err("data offset overflows"))?;
        // The last tensor's padding may be missing in files written by older tools; its data may not.
        let data_end = tensors
            .last()
            .map(|t| {
                data_offset
                    .checked_add(t.offset)
                    .and_then(|o| o.checked_add(t.n_bytes()))
            })
            .unwrap_or(Some(data_offset));
        match data_end {
            Some(end) if end <= bytes.len() as u64 => {}
            _ => {
                return Err(FormatError {
                    offset: bytes.len() as u64,
                    message: format!(
                        "truncated: tensor data needs {} bytes from offset {data_offset}, the file has {}",
                        expected_offset,
                        bytes.len()
                    ),
                });
            }
        }
        Ok(Gguf {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            bytes,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor (in bounds: checked when parsing).
    pub fn tensor_data(&self, t: &TensorInfo) -> &'a [u8] {
        let start = (self.data_offset + t.offset) as usize;
        &self.bytes[start..start + t.n_bytes() as usize]
    }

    /// The tensor widened to f32, in GGUF element order.
    pub fn dequantize(&self, t: &TensorInfo) -> Vec<f32> {
        let mut out = vec![0.0f32; t.n_elements() as usize];
        let data = self.tensor_data(t);
        let row_len = t.dims[0] as usize;
        let row_bytes = data.len() / (out.len() / row_len).max(1);
        let f = t.ggml_type.dequantizer();
        for (src, dst) in data.chunks_exact(row_bytes.max(1)).zip(out.chunks_exact_mut(row_len)) {
            f(src, dst);
        }
        out
    }
}

// ------------------------------------------------------------------------------------------- writer

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_scalar(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_string(out, s),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Array(a) => {
            out.extend_from_slice(&a.type_id().to_le_bytes());
            out.extend_from_slice(&(a.len() as u64).to_le_bytes());
            match a {
                Array::U8(v) => out.extend_from_slice(v),
                Array::I8(v) => v.iter().for_each(|x| out.push(*x as u8)),
                Array::U16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::I16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::U32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::Bool(v) => v.iter().for_each(|x| out.push(u8::from(*x))),
                Array::String(v) => v.iter().for_each(|s| put_string(out, s)),
                Array::U64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::F64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            }
        }
    }
}

/// Header bytes (magic through padded tensor infos) for the given metadata and tensors; tensor offsets
/// are assigned here, packed in order with default alignment.
pub fn encode_header(metadata: &[(String, Value)], tensors: &mut [TensorInfo]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_string(&mut out, k);
        out.extend_from_slice(&v.type_id().to_le_bytes());
        put_scalar(&mut out, v);
    }
    let mut offset = 0u64;
    for t in tensors.iter_mut() {
        t.offset = offset;
        offset += t.n_bytes().div_ceil(DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT;
        put_string(&mut out, &t.name);
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&t.ggml_type.id().to_le_bytes());
        out.extend_from_slice(&t.offset.to_le_bytes());
    }
    out.resize(
        out.len().div_ceil(DEFAULT_ALIGNMENT as usize) * DEFAULT_ALIGNMENT as usize,
        0,
    );
    out
}

/// Streams a GGUF file to `<path>.partial`, then fsyncs and renames it into place, so a reader never sees
/// a half-written model under the final name. Tensor data must arrive in header order.
pub struct Writer {
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    hasher: sha2::Sha256,
    written: u64,
    pending_pad: usize,
}

impl Writer {
    pub fn create(path: &std::path::Path, header: &[u8]) -> std::io::Result<Self> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = std::path::PathBuf::from(tmp);
        let file = std::fs::File::create(&tmp)?;
        let mut w = Writer {
            path: path.to_owned(),
            tmp,
            file: std::io::BufWriter::with_capacity(8 << 20, file),
            hasher: sha2::Digest::new(),
            written: 0,
            pending_pad: 0,
        };
        w.put(header)?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        sha2::Digest::update(&mut self.hasher, b);
        self.written += b.len() as u64;
        self.file.write_all(b)
    }

    /// Append part of the current tensor's data.
    pub fn data(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.put(b)
    }

    /// Pad after a finished tensor.
    pub fn end_tensor(&mut self) -> std::io::Result<()> {
        let pad = (DEFAULT_ALIGNMENT - self.written % DEFAULT_ALIGNMENT) % DEFAULT_ALIGNMENT;
        self.pending_pad = pad as usize;
        let zeros = vec![0u8; self.pending_pad];
        self.put(&zeros)
    }

    /// Flush, fsync, rename; returns (bytes, sha256 hex).
    pub fn finish(mut self) -> std::io::Result<(u64, String)> {
        self.file.flush()?;
        let file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Persist the rename itself; failure here only weakens durability, not correctness.
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        Ok((self.written, hex::encode(sha2::Digest::finalize(self.hasher))))
    }

    /// Remove the partial file after a failure.
    pub fn abandon(self) {
        let tmp = self.tmp.clone();
        drop(self);
        let _ = std::fs::remove_file(tmp);
    }
}
