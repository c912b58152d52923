//! Safetensors checkpoints with torchvision names, and the load report.
//!
//! A checkpoint holds every parameter and BatchNorm running statistic under its torchvision
//! name, a `num_batches_tracked` scalar per BatchNorm (so PyTorch's strict `load_state_dict`
//! accepts it), and `__metadata__` keys `arch`, `classes` (JSON list), `input` (JSON
//! `[c, h, w]`), `mean`, `std` (JSON lists) and `spec` (the full [`ModelSpec`] as JSON).
//! Loading reports applied / missing / unused / shape-mismatched keys, like burn-store's
//! `ApplyResult`; a mismatch is an error unless it is the head being replaced.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use safetensors::tensor::{Dtype, TensorView};

use super::dtype::{self, Elem, Order};
use super::{ModelSpec, Net, pytorch};
use crate::params::{self, Kind};
use crate::{Error, Result, util};

/// Tensors read from a checkpoint file, converted to f32, in checkpoint layout.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The file it came from.
    pub path: PathBuf,
    /// name -> (shape, values).
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    /// `__metadata__`.
    pub metadata: HashMap<String, String>,
}

/// What loading a checkpoint into a network did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LoadReport {
    /// Names copied into the network.
    pub applied: Vec<String>,
    /// Network tensors absent from the file (left as initialized).
    pub missing: Vec<String>,
    /// File tensors the network has no place for.
    pub unused: Vec<String>,
    /// Present in both with different shapes: (name, network shape, file shape).
    pub mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// Head tensors left freshly initialized because the classes differ.
    pub replaced_head: Vec<String>,
}

impl LoadReport {
    /// One line: counts of each category.
    pub fn summary(&self) -> String {
        format!(
            "applied {}, missing {}, unused {}, mismatched {}, head replaced {}",
            self.applied.len(),
            self.missing.len(),
            self.unused.len(),
            self.mismatched.len(),
            self.replaced_head.len()
        )
    }
}

fn to_f32(path: &Path, name: &str, view: &TensorView<'_>) -> Result<Vec<f32>> {
    let elem = match view.dtype() {
        Dtype::F32 => Elem::F32,
        Dtype::F64 => Elem::F64,
        Dtype::F16 => Elem::F16,
        Dtype::BF16 => Elem::BF16,
        Dtype::I64 => Elem::I64,
        other => {
            return Err(Error::format(
                path,
                format!("tensor {name} has unsupported dtype {other:?}"),
            ));
        }
    };
    Ok(dtype::to_f32(elem, view.data(), Order::Little))
}

impl Checkpoint {
    /// Reads a checkpoint: safetensors, or a PyTorch `.pth` / `.pt` file (see
    /// [`super::pytorch`]), told apart by extension and signature. A known weights name
    /// (`efficientnet-lite0`, see [`crate::weights`]) that is not a file reads the cached file,
    /// with its architecture recorded as metadata `arch`.
    pub fn read(path: &Path) -> Result<Self> {
        if !path.exists() {
            let (cached, arch) = crate::weights::resolve(path)?;
            if let Some(arch) = arch {
                let mut c = Self::read_file(&cached)?;
                c.metadata
                    .entry("arch".into())
                    .or_insert_with(|| arch.to_string());
                return Ok(c);
            }
        }
        Self::read_file(path)
    }

    /// Reads the checkpoint file at `path`, never a known weights name (what Fisher files,
    /// which share the format, are read with).
    pub fn read_file(path: &Path) -> Result<Self> {
        // messages quote tensor names and pickle globals from the file: kept to one line
        Self::read_file_raw(path).map_err(util::one_line_error)
    }

    fn read_file_raw(path: &Path) -> Result<Self> {
        if pytorch::is_pytorch_file(path) {
            return Ok(Checkpoint {
                path: path.to_path_buf(),
                tensors: pytorch::read(path)?,
                metadata: HashMap::new(),
            });
        }
        let bytes = util::read_input(path, util::MAX_CHECKPOINT_BYTES)?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| Error::format(path, format!("not a valid safetensors file: {e}")))?;
        // the header parsed once more, for a name given twice (which the parser above would
        // take silently, the last one winning)
        if let Some(name) = duplicate_header_name(&bytes) {
            return Err(Error::format(
                path,
                format!("the header names tensor {name:?} twice"),
            ));
        }
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::format(path, format!("not a valid safetensors file: {e}")))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let vals = to_f32(path, &name, &view)?;
            tensors.insert(name, (view.shape().to_vec(), vals));
        }
        Ok(Checkpoint {
            path: path.to_path_buf(),
            tensors,
            metadata: meta.metadata().clone().unwrap_or_default(),
        })
    }

    /// The model spec recorded in the metadata.
    pub fn spec(&self) -> Result<ModelSpec> {
        self.spec_raw().map_err(util::one_line_error)
    }

    fn spec_raw(&self) -> Result<ModelSpec> {
        let raw = self.metadata.get("spec").ok_or_else(|| {
            Error::format(
                &self.path,
                "no sptune metadata (`spec`); pass --arch to describe the network",
            )
        })?;
        let spec: ModelSpec = serde_json::from_str(raw)
            .map_err(|e| Error::format(&self.path, format!("bad `spec` metadata: {e}")))?;
        spec.validate()
            .map_err(|e| Error::format(&self.path, format!("metadata: {e}")))?;
        Ok(spec)
    }

    /// A spec inferred from tensor shapes for a checkpoint without sptune metadata (e.g. a
    /// torchvision state dict): width from `conv1.weight`, stem from its kernel size, classes
    /// from the head. Normalization defaults to ImageNet's.
    pub fn infer_spec(&self, arch: &str) -> Result<ModelSpec> {
        self.infer_spec_as(arch, "--arch")
    }

    /// [`Checkpoint::infer_spec`], its errors naming `flag` as the option that gave `arch`.
    fn infer_spec_as(&self, arch: &str, flag: &str) -> Result<ModelSpec> {
        let shape = |n: &str| self.tensors.get(n).map(|(s, _)| s.clone());
        let mut spec = ModelSpec {
            arch: arch.to_string(),
            classes: vec![],
            input: [3, 224, 224],
            width: 64,
            small_stem: false,
            hidden: vec![],
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        };
        let shapes = |n: &str| shape(n);
        super::registry::get(arch)?
            .infer_spec(&shapes, &mut spec)
            .map_err(|why| {
                // a bare tensor name, or a sentence saying what does not fit
                let msg = if why.contains(' ') {
                    format!("{why} ({flag} {arch})")
                } else {
                    format!("no tensor {why} for {flag} {arch}")
                };
                Error::format(&self.path, msg)
            })?;
        spec.validate().map_err(|e| {
            Error::format(&self.path, format!("spec inferred for {flag} {arch}: {e}"))
        })?;
        Ok(spec)
    }

    /// An error naming the file and the first tensor (in name order) holding a NaN or an
    /// infinite value, if any.
    pub fn check_finite(&self) -> Result<()> {
        match self
            .tensors
            .iter()
            .find(|(_, (_, v))| v.iter().any(|x| !x.is_finite()))
        {
            Some((name, _)) => Err(Error::Checkpoint {
                path: self.path.clone(),
                msg: format!("tensor {name} contains NaN or infinite values"),
            }),
            None => Ok(()),
        }
    }

    /// The spec from metadata, or inferred with `arch` (else the metadata's `arch`, which known
    /// weights carry) when the file has none.
    pub fn spec_or_infer(&self, arch: Option<&str>) -> Result<ModelSpec> {
        self.spec_or_infer_as(arch, "--arch")
    }

    /// [`Checkpoint::spec_or_infer`] for a command whose option naming the architecture is
    /// `flag` (finetune's `--init-arch`): its errors name that option.
    pub fn spec_or_infer_as(&self, arch: Option<&str>, flag: &str) -> Result<ModelSpec> {
        match (self.metadata.contains_key("spec"), arch) {
            (true, _) => self.spec(),
            (false, Some(a)) => self.infer_spec_as(a, flag),
            (false, None) => match self.metadata.get("arch") {
                Some(a) => self.infer_spec_as(a, flag),
                None => Err(Error::format(
                    &self.path,
                    format!(
                        "no sptune metadata (`spec`); pass {flag} to describe the network (one of {})",
                        super::registry::names().join(", ")
                    ),
                )),
            },
        }
    }
}

/// Loads `ckpt` into `net` (built from `spec`). When `replace_head` is true (the classes
/// differ), the head tensors stay freshly initialized whatever their shapes; every other missing
/// or mismatched tensor is an error naming the file and the tensor.
pub fn load_into(
    net: Net,
    spec: &ModelSpec,
    ckpt: &Checkpoint,
    replace_head: bool,
) -> Result<(Net, LoadReport)> {
    let table = params::table(&net);
    let heads = spec.head_names();
    let mut report = LoadReport::default();
    let mut to_apply: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
    for info in &table {
        if replace_head && heads.contains(&info.name) {
            // new classes: the old head's output i means another class, so never reuse it
            report.replaced_head.push(info.name.clone());
            continue;
        }
        match ckpt.tensors.get(&info.name) {
            None => {
                if replace_head && heads.contains(&info.name) {
                    report.replaced_head.push(info.name.clone());
                } else {
                    report.missing.push(info.name.clone());
                }
            }
            Some((shape, vals)) => {
                if *shape == info.shape {
                    if vals.iter().any(|v| !v.is_finite()) {
                        return Err(Error::Checkpoint {
                            path: ckpt.path.clone(),
                            msg: format!("tensor {} contains NaN or infinite values", info.name),
                        });
                    }
                    to_apply.insert(info.name.clone(), (shape.clone(), vals.clone()));
                    report.applied.push(info.name.clone());
                } else if replace_head && heads.contains(&info.name) {
                    report.replaced_head.push(info.name.clone());
                } else {
                    report
                        .mismatched
                        .push((info.name.clone(), info.shape.clone(), shape.clone()));
                }
            }
        }
    }
    let known: std::collections::HashSet<&str> = table.iter().map(|i| i.name.as_str()).collect();
    for name in ckpt.tensors.keys() {
        if !known.contains(name.as_str()) && !name.ends_with("num_batches_tracked") {
            report.unused.push(name.clone());
        }
    }
    if let Some((n, want, got)) = report.mismatched.first() {
        return Err(Error::Checkpoint {
            path: ckpt.path.clone(),
            msg: format!(
                "tensor {n} has shape {got:?}, the {} model needs {want:?} ({} mismatched in all)",
                spec.arch,
                report.mismatched.len()
            ),
        });
    }
    if let Some(n) = report.missing.first() {
        return Err(Error::Checkpoint {
            path: ckpt.path.clone(),
            msg: format!(
                "tensor {n} is missing for the {} model ({} missing in all)",
                spec.arch,
                report.missing.len()
            ),
        });
    }
    Ok((params::assign(net, &to_apply), report))
}

/// Reads a checkpoint and builds its network on `device`.
pub fn load_model(path: &Path, arch: Option<&str>, device: &Device) -> Result<(Net, ModelSpec)> {
    let ckpt = Checkpoint::read(path)?;
    let spec = ckpt.spec_or_infer(arch)?;
    let net = spec.init(device)?;
    let (net, _) = load_into(net, &spec, &ckpt, false)?;
    Ok((net, spec))
}

/// Serializes tensors (checkpoint layout) plus metadata to safetensors bytes.
pub fn to_bytes(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    extra_i64: &[String],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let raw: Vec<(String, Vec<usize>, Vec<u8>, Dtype)> = tensors
        .iter()
        .map(|(n, s, v)| {
            let b = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (n.clone(), s.clone(), b, Dtype::F32)
        })
        .chain(
            extra_i64
                .iter()
                .map(|n| (n.clone(), vec![], 0i64.to_le_bytes().to_vec(), Dtype::I64)),
        )
        .collect();
    let views = raw
        .iter()
        .map(|(n, s, b, d)| {
            TensorView::new(*d, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Other(format!("tensor {n}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes =
        safetensors::serialize(views, Some(metadata)).map_err(|e| Error::Other(e.to_string()))?;
    Ok(canonical_header(bytes))
}

/// The same safetensors bytes with the header's JSON keys sorted at every level: the
/// safetensors crate writes the metadata from a `HashMap`, in a random order, so two runs that
/// save the same tensors would otherwise differ in bytes (breaking `sha256sum` checks and
/// caches). The header keeps its length (the same keys and values, reordered; the padding
/// spaces after it stay), so the tensors' offsets are unchanged.
pub fn canonical_header(mut bytes: Vec<u8>) -> Vec<u8> {
    let Some(n) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    else {
        return bytes;
    };
    let Some(header) = bytes.get(8..8 + n) else {
        return bytes;
    };
    let text = String::from_utf8_lossy(header);
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text.trim_end()) else {
        return bytes;
    };
    let mut sorted = String::new();
    write_sorted(&value, &mut sorted);
    if sorted.len() <= n {
        // padded by hand: a format width is at most 65535, and headers can be longer
        let mut padded = sorted.into_bytes();
        padded.resize(n, b' ');
        bytes[8..8 + n].copy_from_slice(&padded);
    }
    bytes
}

/// `v` as compact JSON with every object's keys in sorted order.
fn write_sorted(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                write_sorted(&m[k], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Named tensors in checkpoint layout: `(name, shape, values)`.
pub type NamedTensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// Every tensor of `net` (any module) in checkpoint layout, and the names of the BatchNorm
/// counters PyTorch keeps beside the running statistics; a non-finite value is refused naming
/// the tensor and `path`, the file about to be written.
pub fn finite_tensors<M: burn::module::Module>(
    net: &M,
    path: &Path,
) -> Result<(NamedTensors, Vec<String>)> {
    let mut tensors = Vec::new();
    let mut nbt = Vec::new();
    for (info, vals) in params::values(net) {
        if let Some(v) = vals.iter().find(|v| !v.is_finite()) {
            return Err(Error::Diverged(format!(
                "tensor {} holds {v}; refusing to write {}",
                info.name,
                path.display()
            )));
        }
        if info.kind == Kind::Buffer && info.name.ends_with("running_mean") {
            nbt.push(info.name.replace("running_mean", "num_batches_tracked"));
        }
        tensors.push((info.name, info.shape, vals));
    }
    Ok((tensors, nbt))
}

/// The network as an in-memory checkpoint described by `spec` (`path` names it in messages).
pub fn checkpoint_of<M: burn::module::Module>(
    net: &M,
    spec: &ModelSpec,
    path: &Path,
) -> Result<Checkpoint> {
    let (tensors, _) = finite_tensors(net, path)?;
    let mut metadata = HashMap::new();
    metadata.insert("spec".to_string(), serde_json::to_string(spec).unwrap());
    metadata.insert("arch".to_string(), spec.arch.clone());
    Ok(Checkpoint {
        path: path.to_path_buf(),
        tensors: tensors
            .into_iter()
            .map(|(n, shape, v)| (n, (shape, v)))
            .collect(),
        metadata,
    })
}

/// `sptune convert`: a checkpoint (PyTorch `.pth`/`.pt` or safetensors) read, loaded into the
/// network its spec (or `arch`) describes, and saved as an sptune checkpoint at `output` with
/// a `converted_from` metadata entry. The output is checked first: never the input file
/// ([`crate::util::check_output`]).
pub fn convert(
    input: &Path,
    output: &Path,
    arch: Option<&str>,
    device: &Device,
) -> Result<(ModelSpec, LoadReport)> {
    crate::util::check_output(output, &[input]).map_err(|e| match e {
        Error::Invalid { msg, .. } => Error::invalid("OUTPUT", msg),
        e => e,
    })?;
    let ckpt = Checkpoint::read(input)?;
    let spec = ckpt.spec_or_infer(arch)?;
    let (net, report) = load_into(spec.init(device)?, &spec, &ckpt, false)?;
    save_model(
        &net,
        &spec,
        output,
        &[("converted_from", input.display().to_string())],
    )?;
    Ok((spec, report))
}

/// Saves the network with its spec to `path` atomically (temp file, then rename).
pub fn save_model(
    net: &Net,
    spec: &ModelSpec,
    path: &Path,
    extra_meta: &[(&str, String)],
) -> Result<()> {
    let (tensors, nbt) = finite_tensors(net, path)?;
    let mut meta = HashMap::new();
    meta.insert("format".into(), "pt".into());
    meta.insert("arch".into(), spec.arch.clone());
    meta.insert(
        "classes".into(),
        serde_json::to_string(&spec.classes).unwrap(),
    );
    meta.insert("input".into(), serde_json::to_string(&spec.input).unwrap());
    meta.insert("mean".into(), serde_json::to_string(&spec.mean).unwrap());
    meta.insert("std".into(), serde_json::to_string(&spec.std).unwrap());
    meta.insert("spec".into(), serde_json::to_string(spec).unwrap());
    for (k, v) in extra_meta {
        meta.insert((*k).to_string(), v.clone());
    }
    let bytes = to_bytes(&tensors, &nbt, meta)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    util::write_atomic(path, &bytes)
}

/// The first name a safetensors header gives twice (`bytes` is the whole file, already
/// checked by the `safetensors` parser).
fn duplicate_header_name(bytes: &[u8]) -> Option<String> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    struct FirstDuplicate;
    impl<'de> Visitor<'de> for FirstDuplicate {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(name) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                if !seen.insert(name.clone()) {
                    return Ok(Some(name));
                }
            }
            Ok(None)
        }
    }
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let header = bytes.get(8..8usize.checked_add(usize::try_from(n).ok()?)?)?;
    serde_json::Deserializer::from_slice(header)
        .deserialize_map(FirstDuplicate)
        .ok()
        .flatten()
}
