//! PyTorch checkpoints (`torch.save` files, `.pth` / `.pt`), read with burn's own reader
//! (burn-store's `PytorchReader`): the zip container (PyTorch ≥ 1.6) and the legacy one,
//! strided and offset views gathered by the reader. There is no second pickle parser here. The
//! reader is a parser, not an interpreter: it never calls what a pickle names. A file whose
//! pickle names any global other than PyTorch's, `collections`' or numpy's (e.g. `os.system`,
//! which a hostile pickle uses to run a command under `torch.load(weights_only=False)`) is
//! refused outright, as `torch.load(weights_only=True)` does.
//!
//! A state dict nested under `state_dict` or `model` (training checkpoints) is unwrapped, and a
//! `module.` prefix (`nn.DataParallel`) is stripped, when every tensor carries it. Values are
//! converted to f32 (by `models/dtype.rs`, like the safetensors reader's). [`read`] returns the
//! tensors only: the file carries no sptune metadata, so the architecture comes from `--arch`
//! and [`Checkpoint::infer_spec`](super::checkpoint::Checkpoint::infer_spec).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use burn_store::pytorch::PytorchReader;
use burn_store::pytorch_reader::{DType, PickleValue};

use super::dtype::{Elem, Order, to_f32};
use crate::{Error, Result};

/// Tensors read from a file, converted to f32: name -> (shape, values).
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Wrappers that training scripts put around a state dict, outermost first.
const WRAPPERS: &[&str] = &["state_dict", "model", "module"];

/// Whether `path` looks like a PyTorch checkpoint: a `.pth`/`.pt`/`.bin`/`.ckpt` extension, or
/// (for other names) a zip or pickle signature where a safetensors header is not.
pub fn is_pytorch_file(path: &Path) -> bool {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("pth" | "pt" | "bin" | "ckpt") => return true,
        Some("safetensors") => return false,
        _ => {}
    }
    // only a regular file is sniffed (opening a FIFO would block); others are refused later
    if !path.is_file() {
        return false;
    }
    let mut head = [0u8; 9];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    // safetensors: u64 little-endian header length, then '{'; its low byte may be 0x80
    if n == 9 && head[8] == b'{' {
        return false;
    }
    // zip local header, or a pickle PROTO opcode (0x80) as legacy torch.save files start
    (n >= 4 && head[..4] == *b"PK\x03\x04") || (n >= 2 && head[0] == 0x80 && head[1] <= 5)
}

/// Globals a state dict may name besides tensors and containers.
fn allowed_global(name: &str) -> bool {
    ["torch.", "collections.", "numpy.", "_codecs."]
        .iter()
        .any(|p| name.starts_with(p))
}

/// The first value (dotted path, Python name) that is an object of a foreign global.
fn foreign_global(v: &PickleValue, at: &str) -> Option<(String, String)> {
    let join = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    match v {
        PickleValue::Unsupported(name) if !allowed_global(name) => {
            Some((at.to_string(), name.clone()))
        }
        PickleValue::Dict(d) => {
            let mut keys: Vec<&String> = d.keys().collect();
            keys.sort();
            keys.into_iter()
                .find_map(|k| foreign_global(&d[k], &join(k)))
        }
        PickleValue::List(l) => l
            .iter()
            .enumerate()
            .find_map(|(i, x)| foreign_global(x, &join(&i.to_string()))),
        _ => None,
    }
}

/// burn-store's element type as ours; `None` for those sptune does not read.
fn elem(dtype: DType) -> Option<Elem> {
    Some(match dtype {
        DType::F32 => Elem::F32,
        DType::F64 => Elem::F64,
        DType::F16 => Elem::F16,
        DType::BF16 => Elem::BF16,
        DType::I64 => Elem::I64,
        DType::I32 => Elem::I32,
        DType::U8 | DType::Bool => Elem::U8,
        DType::I8 => Elem::I8,
        _ => return None,
    })
}

/// Strips a wrapper prefix (`state_dict.`, `model.`, `module.`) shared by every name.
fn unwrap_names(mut names: BTreeMap<String, String>) -> BTreeMap<String, String> {
    loop {
        let Some(w) = WRAPPERS.iter().find(|w| {
            let p = format!("{w}.");
            !names.is_empty() && names.values().all(|n| n.starts_with(&p))
        }) else {
            return names;
        };
        let cut = w.len() + 1;
        names = names
            .into_iter()
            .map(|(orig, n)| (orig, n[cut..].to_string()))
            .collect();
    }
}

/// How many times the file's size the tensors of a `.pth` file may take in all when
/// materialized. A view shares its storage, so the tensors may legitimately exceed the stored
/// bytes (tied weights, a few overlapping views), but a view expanded with stride 0 (a few
/// bytes of storage declared as a 25000x25000 tensor) would materialize gigabytes from a file
/// of kilobytes: it is refused before any tensor is read.
pub const MAX_VIEW_EXPANSION: u64 = 4;

/// Slack added to the bound of [`MAX_VIEW_EXPANSION`] for tiny files (scalars, headers).
const VIEW_SLACK_BYTES: u64 = 64 << 10;

/// Checks that the tensors `tensors` declare fit the file (`file_len` bytes): the sum over
/// tensors of elements x element size is at most [`MAX_VIEW_EXPANSION`] x the file size (plus
/// 64 KiB). The error names the largest tensor.
fn check_declared_sizes(
    path: &Path,
    file_len: u64,
    tensors: &std::collections::HashMap<String, burn_store::pytorch_reader::Tensor>,
) -> Result<()> {
    let bytes_of = |t: &burn_store::pytorch_reader::Tensor| -> u128 {
        t.shape().iter().fold(t.dtype().size() as u128, |acc, &d| {
            acc.saturating_mul(d as u128)
        })
    };
    let total: u128 = tensors.values().map(bytes_of).fold(0, u128::saturating_add);
    let limit =
        u128::from(file_len) * u128::from(MAX_VIEW_EXPANSION) + u128::from(VIEW_SLACK_BYTES);
    if total <= limit {
        return Ok(());
    }
    // a total over the limit has a tensor; the largest (first by name on ties) is named
    let Some((name, big)) = tensors
        .iter()
        .max_by_key(|(n, t)| (bytes_of(t), std::cmp::Reverse(n.as_str())))
    else {
        return Ok(());
    };
    Err(Error::format(
        path,
        format!(
            "tensors declare {total} bytes in all (largest: {name} {:?} {:?}, {} bytes) but the \
             file holds {file_len}; views expanding their storage past {MAX_VIEW_EXPANSION}x the \
             file size (e.g. stride 0) are refused",
            big.shape(),
            big.dtype(),
            bytes_of(big)
        ),
    ))
}

/// Reads the tensors of a PyTorch checkpoint, converted to f32 (such a file carries no
/// metadata); [`super::checkpoint::Checkpoint::read`] makes a checkpoint of them.
pub fn read(path: &Path) -> Result<Tensors> {
    // messages quote names from the pickle (globals, tensor names): kept to one line
    read_raw(path).map_err(crate::util::one_line_error)
}

fn read_raw(path: &Path) -> Result<Tensors> {
    // a regular file of bounded size; the reader opens it again by path
    let (_, file_len) = crate::util::open_input(path, crate::util::MAX_CHECKPOINT_BYTES)?;
    if let Ok(v) = PytorchReader::read_pickle_data(path, None)
        && let Some((at, name)) = foreign_global(&v, "")
    {
        return Err(Error::format(
            path,
            format!(
                "refused: the pickle names the global {name} (at {:?}), which is not a tensor or \
                 container; nothing was run",
                if at.is_empty() { "<root>" } else { at.as_str() }
            ),
        ));
    }
    let reader = PytorchReader::new(path)
        .map_err(|e| Error::format(path, format!("not a readable PyTorch checkpoint: {e}")))?;
    let tensors = reader.into_tensors();
    if tensors.is_empty() {
        return Err(Error::format(path, "holds no tensors"));
    }
    check_declared_sizes(path, file_len, &tensors)?;
    let names = unwrap_names(tensors.keys().map(|k| (k.clone(), k.clone())).collect());
    let mut out = BTreeMap::new();
    for (orig, name) in names {
        let t = &tensors[&orig];
        let bytes = t.read().map_err(|e| Error::format(path, e.to_string()))?;
        let elem = elem(t.dtype()).ok_or_else(|| {
            Error::format(
                path,
                format!("tensor {name} has unsupported dtype {:?}", t.dtype()),
            )
        })?;
        // the reader returns native-endian bytes
        let vals = to_f32(elem, &bytes, Order::Native);
        out.insert(name, (t.shape().to_vec(), vals));
    }
    Ok(out)
}
