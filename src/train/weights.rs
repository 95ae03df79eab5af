//! Checkpoint tensors into libtorch, and the frozen base weights of the projections (dense or NF4).

use super::nf4::Nf4;
use crate::hf::{Checkpoint, CheckpointError, Dtype, TensorView};
use tch::{Device, Kind, Tensor};

pub fn kind_of(dtype: Dtype) -> Kind {
    match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
    }
}

/// Copies one mapped tensor into a libtorch tensor of `kind` on `device`. The copy is made from the
/// mapped bytes directly (no intermediate Vec), then cast and moved.
pub fn to_tensor(view: &TensorView<'_>, kind: Kind, device: Device) -> Result<Tensor, tch::TchError> {
    let shape: Vec<i64> = view.shape.iter().map(|&d| d as i64).collect();
    let t = Tensor::f_from_data_size(view.data, &shape, kind_of(view.dtype))?;
    t.f_to_device(device)?.f_to_kind(kind)
}

/// Loads a named tensor from the checkpoint.
pub fn load(ck: &Checkpoint, name: &str, kind: Kind, device: Device) -> Result<Tensor, LoadError> {
    let view = ck.tensor(name)?;
    to_tensor(&view, kind, device).map_err(|source| LoadError::Torch {
        name: name.to_owned(),
        source,
    })
}

/// [`load`] for a model that keeps the tensor: the mapped pages are released afterwards, so the checkpoint
/// is not resident a second time beside the model.
pub fn load_owned(ck: &Checkpoint, name: &str, kind: Kind, device: Device) -> Result<Tensor, LoadError> {
    let t = load(ck, name, kind, device)?;
    ck.release(name);
    Ok(t)
}

/// A frozen weight matrix [out, in]: held in the compute dtype, or NF4 and dequantized at each use.
pub enum Frozen {
    Dense(Tensor),
    Nf4(Nf4),
}

impl Frozen {
    /// Loads the named matrices and stacks them along the output dimension (the fused q|k|v and gate|up
    /// projections are one GEMM each).
    pub fn load_rows(
        ck: &Checkpoint,
        names: &[String],
        kind: Kind,
        device: Device,
        nf4: bool,
    ) -> Result<Self, LoadError> {
        if nf4 {
            let mut values = Vec::new();
            let (mut rows, mut cols) = (0i64, 0i64);
            for name in names {
                let view = ck.tensor(name)?;
                rows += view.shape[0] as i64;
                cols = view.shape[1] as i64;
                values.extend(view.to_f32());
                ck.release(name);
            }
            return Ok(Frozen::Nf4(Nf4::from_f32(&values, &[rows, cols], device)));
        }
        let parts = names
            .iter()
            .map(|n| load_owned(ck, n, kind, device))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Frozen::Dense(if parts.len() == 1 {
            parts.into_iter().next().expect("one part")
        } else {
            Tensor::cat(&parts, 0)
        }))
    }

    /// The matrix in `kind` (a shallow handle for dense weights; a fresh dequantized tensor for NF4).
    pub fn weight(&self, kind: Kind) -> Tensor {
        match self {
            Frozen::Dense(w) => w.shallow_clone(),
            Frozen::Nf4(q) => q.dequantize(kind),
        }
    }

    /// Bytes this weight holds on its device.
    pub fn bytes(&self) -> i64 {
        match self {
            Frozen::Dense(w) => (w.numel() * w.kind().elt_size_in_bytes()) as i64,
            Frozen::Nf4(q) => q.bytes(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("tensor {name}: {source}")]
    Torch { name: String, source: tch::TchError },
    #[error("{dir}: {message}")]
    Unsupported { dir: std::path::PathBuf, message: String },
}
