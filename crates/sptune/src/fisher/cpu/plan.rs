//! The per-architecture layer plan of the CPU engine: each layer's host weights, its record in
//! the forward pass and the slots of its Fisher sums, built by walking the network in forward
//! order.

use burn::module::ParamId;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, Linear};

use super::record::{Record, host_f32};
use crate::kernels::window::Window;
use crate::kernels::window::{conv_padding, resolve_padding};
use crate::models::Net;
use crate::models::resnet::{Block, ResNet};
use crate::{Error, Result};

/// A convolution (grouped and depthwise included): its weights `[cout][cin/groups·kh·kw]`,
/// record, Fisher slots and window.
pub(super) struct ConvLayer {
    pub(super) rec: usize,
    pub(super) w: Vec<f32>,
    pub(super) w_slot: usize,
    pub(super) b_slot: Option<usize>,
    pub(super) cin: usize,
    pub(super) cout: usize,
    pub(super) groups: usize,
    pub(super) win: Window,
}

/// An eval-mode BatchNorm: its record, Fisher slots and running statistics.
pub(super) struct NormLayer {
    pub(super) rec: usize,
    pub(super) g_slot: usize,
    pub(super) b_slot: usize,
    pub(super) mean: Vec<f32>,
    pub(super) inv_std: Vec<f32>,
    /// `γ/√(var+ε)`: the backward pass's per-channel factor.
    pub(super) scale: Vec<f32>,
}

/// A linear layer: its weights, record and Fisher slots.
pub(super) struct LinearLayer {
    pub(super) rec: usize,
    /// burn's layout `[in, out]`.
    pub(super) w: Vec<f32>,
    pub(super) w_slot: usize,
    pub(super) b_slot: Option<usize>,
    pub(super) fin: usize,
    pub(super) fout: usize,
}

/// A ResNet block (basic or bottleneck).
pub(super) struct ResidualBlock {
    pub(super) downsample: Option<(ConvLayer, NormLayer)>,
    /// The main branch's (conv, BatchNorm) pairs; ReLU between them, none after the last.
    pub(super) main: Vec<(ConvLayer, NormLayer)>,
}

/// A ResNet: stem, optional max-pool, blocks, classifier.
pub(super) struct ResNetPlan {
    pub(super) conv1: ConvLayer,
    pub(super) bn1: NormLayer,
    pub(super) pool: Option<Window>,
    pub(super) blocks: Vec<ResidualBlock>,
    pub(super) fc: LinearLayer,
}

/// An MBConv block: expansion (1x1, absent at ratio 1), depthwise, projection; ReLU6 after the
/// first two; the input added to the output when `skip`.
pub(super) struct MbConvBlock {
    pub(super) expand: Option<(ConvLayer, NormLayer)>,
    pub(super) depthwise: (ConvLayer, NormLayer),
    pub(super) project: (ConvLayer, NormLayer),
    pub(super) skip: bool,
}

/// An EfficientNet-Lite: stem, MBConv blocks, head, classifier.
pub(super) struct EfficientNetPlan {
    pub(super) stem: (ConvLayer, NormLayer),
    pub(super) blocks: Vec<MbConvBlock>,
    pub(super) head: (ConvLayer, NormLayer),
    pub(super) fc: LinearLayer,
}

/// The layers of a whole network, in forward order.
pub(super) enum NetPlan {
    ResNet(Box<ResNetPlan>),
    EfficientNet(Box<EfficientNetPlan>),
    Mlp(Vec<LinearLayer>),
}

/// Walks the network in forward order, matching each layer with its record.
struct PlanBuilder<'a> {
    records: &'a [Record],
    next: usize,
    /// Slot -> (parameter, number of values).
    slots: Vec<(ParamId, usize)>,
}

impl PlanBuilder<'_> {
    fn record(&mut self, id: ParamId, what: &str) -> Result<usize> {
        let i = self.next;
        match self.records.get(i) {
            Some(r) if r.id == id => {
                self.next += 1;
                Ok(i)
            }
            _ => Err(Error::Other(format!(
                "Fisher engine: layer {i} of the forward pass is not the expected {what}"
            ))),
        }
    }

    fn slot(&mut self, id: ParamId, len: usize) -> usize {
        self.slots.push((id, len));
        self.slots.len() - 1
    }

    fn conv(&mut self, m: &Conv2d) -> Result<ConvLayer> {
        let rec = self.record(m.weight.id, "convolution")?;
        let [cout, cg, kh, kw] = m.weight.dims();
        let cin = cg * m.groups;
        let in_hw = self.records[rec].hw;
        let pad = conv_padding(m, in_hw[0], in_hw[1]);
        Ok(ConvLayer {
            rec,
            w: host_f32(&m.weight.val()),
            w_slot: self.slot(m.weight.id, cout * cg * kh * kw),
            b_slot: m.bias.as_ref().map(|b| self.slot(b.id, cout)),
            cin,
            cout,
            groups: m.groups,
            win: Window::new(m.kernel_size, m.stride, m.dilation, pad, in_hw),
        })
    }

    fn norm(&mut self, m: &BatchNorm) -> Result<NormLayer> {
        let rec = self.record(m.gamma.id, "BatchNorm")?;
        let c = m.gamma.dims()[0];
        let var = host_f32(&m.running_var.value());
        let inv_std: Vec<f32> = var
            .iter()
            .map(|v| 1.0 / (v + m.epsilon as f32).sqrt())
            .collect();
        let gamma = host_f32(&m.gamma.val());
        Ok(NormLayer {
            rec,
            g_slot: self.slot(m.gamma.id, c),
            b_slot: self.slot(m.beta.id, c),
            mean: host_f32(&m.running_mean.value()),
            scale: gamma.iter().zip(&inv_std).map(|(g, s)| g * s).collect(),
            inv_std,
        })
    }

    fn linear(&mut self, m: &Linear) -> Result<LinearLayer> {
        let rec = self.record(m.weight.id, "linear layer")?;
        let [fin, fout] = m.weight.dims();
        Ok(LinearLayer {
            rec,
            w: host_f32(&m.weight.val()),
            w_slot: self.slot(m.weight.id, fin * fout),
            b_slot: m.bias.as_ref().map(|b| self.slot(b.id, fout)),
            fin,
            fout,
        })
    }
}

/// The window of a max-pooling layer on an input of `in_hw`.
fn pool_window(p: &MaxPool2d, in_hw: [usize; 2]) -> Window {
    let pad = resolve_padding(&p.padding, p.kernel_size, p.stride, in_hw[0], in_hw[1]);
    Window::new(p.kernel_size, p.stride, p.dilation, pad, in_hw)
}

/// A ResNet's blocks in forward order.
fn blocks(m: &ResNet) -> impl Iterator<Item = &Block> {
    [&m.layer1, &m.layer2, &m.layer3, &m.layer4]
        .into_iter()
        .flatten()
}

/// A block's main-branch (conv, BatchNorm) pairs in forward order (the third in bottlenecks).
fn main_branch(b: &Block) -> impl Iterator<Item = (&Conv2d, &BatchNorm)> {
    let third = b.conv3.as_ref().zip(b.bn3.as_ref());
    [(&b.conv1, &b.bn1), (&b.conv2, &b.bn2)]
        .into_iter()
        .chain(third)
}

/// The plan of `net` from the records of its forward pass, and the slots of its Fisher sums
/// (slot -> parameter, number of values).
pub(super) fn plan(net: &Net, records: &[Record]) -> Result<(NetPlan, Vec<(ParamId, usize)>)> {
    let mut b = PlanBuilder {
        records,
        next: 0,
        slots: Vec::new(),
    };
    let plan = match net {
        Net::ResNet(m) => {
            let conv1 = b.conv(&m.conv1)?;
            let bn1 = b.norm(&m.bn1)?;
            let pool = m.maxpool.as_ref().map(|p| pool_window(p, conv1.win.out_hw));
            let mut layers = Vec::new();
            for block in blocks(m) {
                let downsample = match &block.downsample {
                    Some((c, n)) => Some((b.conv(c)?, b.norm(n)?)),
                    None => None,
                };
                let mut main = Vec::new();
                for (c, n) in main_branch(block) {
                    main.push((b.conv(c)?, b.norm(n)?));
                }
                layers.push(ResidualBlock { downsample, main });
            }
            let fc = b.linear(&m.fc)?;
            NetPlan::ResNet(Box::new(ResNetPlan {
                conv1,
                bn1,
                pool,
                blocks: layers,
                fc,
            }))
        }
        Net::Sequential(_) => {
            return Err(Error::Other(
                "the CPU engine has no plan for Sequential networks (the probe path computes their Fisher)".into(),
            ));
        }
        Net::Mlp(m) => NetPlan::Mlp(
            m.layers
                .iter()
                .map(|l| b.linear(l))
                .collect::<Result<_>>()?,
        ),
        Net::EfficientNet(m) => {
            let stem = (b.conv(&m._conv_stem)?, b.norm(&m._bn0)?);
            let mut blocks = Vec::new();
            for k in &m._blocks {
                let expand = match (&k._expand_conv, &k._bn0) {
                    (Some(c), Some(n)) => Some((b.conv(c)?, b.norm(n)?)),
                    _ => None,
                };
                let depthwise = (b.conv(&k._depthwise_conv)?, b.norm(&k._bn1)?);
                let project = (b.conv(&k._project_conv)?, b.norm(&k._bn2)?);
                blocks.push(MbConvBlock {
                    expand,
                    depthwise,
                    project,
                    skip: k.skip,
                });
            }
            let head = (b.conv(&m._conv_head)?, b.norm(&m._bn1)?);
            let fc = b.linear(&m._fc)?;
            NetPlan::EfficientNet(Box::new(EfficientNetPlan {
                stem,
                blocks,
                head,
                fc,
            }))
        }
    };
    if b.next != records.len() {
        return Err(Error::Other(format!(
            "Fisher engine: the forward pass ran {} layers, the plan has {}",
            records.len(),
            b.next
        )));
    }
    Ok((plan, b.slots))
}
