//! `sptune segment --init CKPT --data DIR`: a segmentation fine-tune from a classification
//! checkpoint ([`sptune::segmentation::segment`]).

use std::process::ExitCode;

use sptune::segmentation::model::HeadConfig;
use sptune::segmentation::run::default_train;
use sptune::segmentation::{SegmentConfig, segment};

use super::Global;
use crate::args::{HeadArg, SegmentArgs};

/// Runs `sptune segment`.
pub fn run(a: SegmentArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let mut train = default_train(a.reg);
    train.alpha = a.alpha.0[0];
    train.freeze = a.freeze;
    train.bn = a.bn;
    train.beta = a.beta;
    train.lr = a.lr.0[0];
    train.epochs = a.epochs;
    train.batch_size = a.batch_size;
    train.augment.crop = Some((a.crop, a.crop));
    train.seed = a.seed;
    let cfg = SegmentConfig {
        init: a.init,
        data: a.data,
        out: a.out.clone(),
        output_stride: a.output_stride,
        head: match a.head {
            HeadArg::Fcn => HeadConfig::Fcn,
            HeadArg::Deeplabv3 => HeadConfig::DeepLab {
                rates: a.aspp_rates,
                channels: a.aspp_channels,
            },
        },
        train,
        source: a.source_classes.map(|c| (a.source_data, c)),
        fisher: a.fisher,
        alphas: a.alpha.0,
        lrs: a.lr.0,
        validation: a.validation,
    };
    g.device.seed(a.seed);
    let o = segment(&cfg, &g.device)?;
    if g.json {
        let iou: Vec<_> = o.classes.iter().zip(&o.iou).collect();
        let forgetting = o
            .forgetting
            .as_ref()
            .map(|f| serde_json::json!({"source_acc": f.source_acc, "after_acc": f.after_acc}));
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "miou": o.miou, "pixel_accuracy": o.pixel_accuracy, "iou": iou,
                "forgetting": forgetting, "losses": o.losses,
                "alpha": o.alpha, "lr": o.lr, "validation": o.validation,
            }))?
        );
    } else {
        for t in &o.validation {
            println!(
                "alpha {}, lr {}: validation mIoU {:.2}%",
                t.alpha,
                t.lr,
                100.0 * t.val_miou
            );
        }
        if !o.validation.is_empty() {
            println!("chosen: alpha {}, lr {}", o.alpha, o.lr);
        }
        super::print_ious(&o.classes, &o.iou);
        println!(
            "mIoU {:.2}%, pixel accuracy {:.2}%",
            100.0 * o.miou,
            100.0 * o.pixel_accuracy
        );
        if let Some(f) = &o.forgetting {
            super::print_forgetting(f);
        }
        if let Some(out) = &a.out {
            println!("-> {}", out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
