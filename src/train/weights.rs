//! Checkpoint tensors into libtorch.

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

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("tensor {name}: {source}")]
    Torch { name: String, source: tch::TchError },
}
