//! Fine-tune a checkpoint with L2-SP through the library API.
//!
//! `cargo run --release --example finetune_l2sp -- SOURCE.safetensors` fine-tunes SOURCE on
//! Fashion-MNIST classes 5-9 with 20 images per class; without an argument it first pretrains
//! a small source model on classes 0-4 (the same call `sptune pretrain` makes).

use burn::tensor::Device;
use sptune::regularizer::Scheme;
use sptune::run::{self, FinetuneConfig, PretrainConfig};

fn main() -> sptune::Result<()> {
    let device = Device::flex();
    let source = match std::env::args().nth(1) {
        Some(path) => path.into(),
        None => pretrain_source(&device)?,
    };
    // --- the fine-tune itself ---
    let mut cfg = FinetuneConfig::new(source, "5-9");
    cfg.data.per_class = Some(20);
    cfg.train.reg = Scheme::L2Sp;
    cfg.train.alpha = 0.1;
    cfg.train.epochs = 20;
    cfg.train.lr = 0.02;
    cfg.out = Some("runs/example/tuned.safetensors".into());
    let run = run::finetune(&cfg, &device, &mut |_| {})?;
    println!("target test accuracy {:.2}%", 100.0 * run.report.test_acc);
    // ---
    for e in &run.report.epochs {
        println!("{}", run::dir::epoch_line(e));
    }
    println!("saved runs/example/tuned.safetensors (run directory runs/example/tuned.run)");
    Ok(())
}

/// A small ResNet-18 (width 8) pretrained on Fashion-MNIST 0-4 for two epochs.
fn pretrain_source(device: &Device) -> sptune::Result<std::path::PathBuf> {
    let mut cfg = PretrainConfig::default();
    cfg.data.classes = "0-4".into();
    cfg.data.per_class = Some(500);
    cfg.model.width = 8;
    cfg.train.epochs = 2;
    cfg.train.lr = 0.05;
    let path = std::path::PathBuf::from("runs/example/source.safetensors");
    cfg.out = Some(path.clone());
    let run = run::pretrain(&cfg, device, &mut |_| {})?;
    println!("source test accuracy {:.2}%", 100.0 * run.report.test_acc);
    Ok(path)
}
