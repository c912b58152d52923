//! A fine-tuned segmentation network on disk, and back.
//!
//! The file is a safetensors checkpoint under torchvision's segmentation names (`backbone.*`,
//! `classifier.*`, BatchNorm counters included as in a torchvision state dict) with sptune's
//! metadata: `arch` (`fcn` or `deeplabv3`), the `head` ([`HeadConfig`], JSON), the data's
//! `classes` (JSON list), the `output_stride`, and the classification source's spec as
//! `backbone_spec` (architecture, width, stem, input channels, normalization), and `run`: how
//! it was made (JSON: the fine-tune's settings with the chosen α and rate, the validation of
//! every candidate, the starting checkpoint and the data). [`load`] rebuilds the network from that metadata and refuses a file whose
//! tensors do not fill it exactly, naming the first tensor missing or of the wrong shape.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::Device;

use super::model::HeadConfig;
use super::{Backbone, SegNet};
use crate::models::checkpoint::{Checkpoint, finite_tensors, to_bytes};
use crate::models::{ModelSpec, Net};
use crate::{Error, Result, params, util};

/// The `arch` metadata of segmentation files.
pub const ARCHS: [&str; 2] = ["fcn", "deeplabv3"];

/// A segmentation network read back with what it was trained for.
#[derive(Debug)]
pub struct SavedSegNet {
    /// The network, in eval mode.
    pub net: SegNet,
    /// Its classes, in output order.
    pub classes: Vec<String>,
    /// The classification source's spec (channels, normalization, backbone).
    pub backbone: ModelSpec,
    /// Stride of the backbone's output.
    pub output_stride: usize,
    /// Its head.
    pub head: HeadConfig,
    /// How it was made (`None` for a file without that metadata).
    pub run: Option<serde_json::Value>,
}

/// Whether `ckpt` is a segmentation file written by sptune.
pub fn is_segmentation(ckpt: &Checkpoint) -> bool {
    ckpt.metadata
        .get("arch")
        .is_some_and(|a| ARCHS.contains(&a.as_str()))
}

/// Whether segmentation takes the network of `spec` as a backbone: ResNets and
/// EfficientNet-Lite0.
pub fn is_backbone(spec: &ModelSpec) -> bool {
    spec.arch.starts_with("resnet") || spec.arch == "efficientnet-lite0"
}

/// The output stride of `spec`'s backbone without dilation: 8 for a small-stem ResNet (no
/// strided stem, no max-pool), 32 for torchvision's ResNet stem and for EfficientNet-Lite0.
pub fn plain_stride(spec: &ModelSpec) -> usize {
    if spec.arch.starts_with("resnet") && spec.small_stem {
        8
    } else {
        32
    }
}

/// The backbone of `net` (built from `spec`, which [`is_backbone`]), dilated to
/// `output_stride`.
pub fn backbone_of(spec: &ModelSpec, net: Net, output_stride: usize) -> Result<Backbone> {
    let backbone = match net {
        Net::ResNet(r) => Backbone::from_resnet(r),
        Net::EfficientNet(e) => Backbone::from_efficientnet(e),
        _ => {
            return Err(Error::invalid(
                "backbone",
                format!(
                    "{} (segmentation takes a ResNet or EfficientNet-Lite0)",
                    spec.arch
                ),
            ));
        }
    };
    let flags = dilation_for(output_stride, plain_stride(spec))?;
    Ok(backbone.dilate(flags))
}

/// The dilation flags of the last three striding stages that give `output_stride`, for a
/// backbone whose output stride without dilation is `plain` (32; 8 for the small-stem ResNet):
/// `plain`, `plain / 2` or `plain / 4`.
pub fn dilation_for(output_stride: usize, plain: usize) -> Result<[bool; 3]> {
    let allowed = [plain, plain / 2, plain / 4];
    match allowed.iter().position(|&s| s == output_stride) {
        Some(0) => Ok([false, false, false]),
        Some(1) => Ok([false, false, true]),
        Some(2) => Ok([false, true, true]),
        _ => Err(Error::invalid(
            "--output-stride",
            format!(
                "{output_stride} (this backbone allows {}, {} or {})",
                allowed[0], allowed[1], allowed[2]
            ),
        )),
    }
}

/// Saves `net` (built with `head`) with its `classes`, `output_stride`, the source's spec
/// `backbone` and how it was made, `run` (see the module's documentation), through a
/// temporary file.
pub fn save(
    net: &SegNet,
    head: &HeadConfig,
    classes: &[String],
    backbone: &ModelSpec,
    output_stride: usize,
    run: &serde_json::Value,
    path: &Path,
) -> Result<()> {
    let (tensors, nbt) = finite_tensors(net, path)?;
    let mut meta = HashMap::new();
    meta.insert("format".into(), "pt".into());
    meta.insert("arch".into(), head.name().into());
    let json = |e: serde_json::Error| Error::Other(format!("cannot write metadata: {e}"));
    meta.insert(
        "classes".into(),
        serde_json::to_string(classes).map_err(json)?,
    );
    meta.insert(
        "backbone_spec".into(),
        serde_json::to_string(backbone).map_err(json)?,
    );
    meta.insert("output_stride".into(), output_stride.to_string());
    meta.insert("head".into(), serde_json::to_string(head).map_err(json)?);
    meta.insert("run".into(), run.to_string());
    let bytes = to_bytes(&tensors, &nbt, meta)?;
    util::write_atomic(path, &bytes)
}

/// Reads a file written by [`save`] onto `device` (see the module's documentation).
pub fn load(path: &Path, device: &Device) -> Result<SavedSegNet> {
    from_checkpoint(&Checkpoint::read(path)?, device)
}

/// [`load`] from a checkpoint already read.
pub fn from_checkpoint(ckpt: &Checkpoint, device: &Device) -> Result<SavedSegNet> {
    let bad = |what: String| Error::format(&ckpt.path, what);
    if !is_segmentation(ckpt) {
        return Err(bad(format!(
            "not a segmentation network (its `arch` metadata is {:?}, not one of {ARCHS:?})",
            ckpt.metadata.get("arch").map_or("missing", String::as_str)
        )));
    }
    let meta = |key: &str| {
        ckpt.metadata
            .get(key)
            .ok_or_else(|| bad(format!("no `{key}` metadata")))
    };
    let classes: Vec<String> = serde_json::from_str(meta("classes")?)
        .map_err(|e| bad(format!("bad `classes` metadata: {e}")))?;
    let backbone: ModelSpec = serde_json::from_str(meta("backbone_spec")?)
        .map_err(|e| bad(format!("bad `backbone_spec` metadata: {e}")))?;
    backbone
        .validate()
        .map_err(|e| bad(format!("`backbone_spec` metadata: {e}")))?;
    let output_stride: usize = meta("output_stride")?
        .parse()
        .map_err(|_| bad("bad `output_stride` metadata (not a whole number)".into()))?;
    if classes.is_empty() || classes.len() > super::IGNORE as usize {
        return Err(bad(format!(
            "`classes` metadata lists {} classes (1 to 255)",
            classes.len()
        )));
    }
    if !is_backbone(&backbone) {
        return Err(bad(format!(
            "`backbone_spec` is a {}; segmentation backbones are ResNets and \
             EfficientNet-Lite0",
            backbone.arch
        )));
    }
    let body = backbone_of(&backbone, backbone.init(device)?, output_stride)
        .map_err(|e| bad(format!("`output_stride` metadata: {e}")))?;
    let head: HeadConfig = serde_json::from_str(meta("head")?)
        .map_err(|e| bad(format!("bad `head` metadata: {e}")))?;
    if head.name() != ckpt.metadata["arch"] {
        return Err(bad(format!(
            "`head` metadata is a {}, `arch` says {}",
            head.name(),
            ckpt.metadata["arch"]
        )));
    }
    let net = head.build(body, classes.len(), device);
    for info in params::table(&net) {
        match ckpt.tensors.get(&info.name) {
            None => return Err(bad(format!("tensor {} is missing", info.name))),
            Some((shape, _)) if *shape != info.shape => {
                return Err(bad(format!(
                    "tensor {} has shape {shape:?}, the network needs {:?}",
                    info.name, info.shape
                )));
            }
            Some(_) => {}
        }
    }
    let values: HashMap<String, (Vec<usize>, Vec<f32>)> =
        ckpt.tensors.clone().into_iter().collect();
    Ok(SavedSegNet {
        net: params::assign(net, &values),
        classes,
        backbone,
        output_stride,
        head,
        run: ckpt
            .metadata
            .get("run")
            .and_then(|r| serde_json::from_str(r).ok()),
    })
}

/// Whether the file at `path` is a segmentation network, from its safetensors header alone
/// (`false` for anything else: a missing file, a `.pth`, a weights name, a classification
/// checkpoint), so commands that take either kind can choose before reading the tensors.
pub fn probe(path: &Path) -> bool {
    use std::io::Read;
    // a FIFO or a device would block or never end: only regular files are opened
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut len = [0u8; 8];
    if f.read_exact(&mut len).is_err() {
        return false;
    }
    let n = u64::from_le_bytes(len);
    // a header is JSON of names and offsets: refuse absurd lengths before allocating
    if n > 100 << 20 {
        return false;
    }
    let mut header = vec![0u8; n as usize];
    if f.read_exact(&mut header).is_err() {
        return false;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&header) else {
        return false;
    };
    v.get("__metadata__")
        .and_then(|m| m.get("arch"))
        .and_then(|a| a.as_str())
        .is_some_and(|a| ARCHS.contains(&a))
}
