//! Resumable training: the state written at every epoch end and read back by `--resume`.
//!
//! A killed run loses at most the epoch in progress. The state holds everything the following
//! epochs depend on, so that a resumed run ends with the same bits as one never stopped:
//! - the network's tensors (parameters and BatchNorm running statistics), checkpoint names;
//! - SGD's momentum buffer of every parameter (`momentum/<name>`, in the optimizer's layout);
//! - the position of the random stream that shuffles and augments (ChaCha8 seed, stream, word
//!   position);
//! - the epochs done and their logs, and the best validation epoch so far.
//!
//! Files, in the run directory's `resume/` folder: `state.safetensors` (tensors plus the rest as
//! JSON in its metadata key `sptune_resume`), and, with a validation split, the best epoch's
//! network in `best-eNNNN.safetensors`. The best file is written before the state that names it
//! and older ones are removed after, so a kill between any two writes leaves a consistent pair.
//! Every file is written to a temporary name and renamed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::module::ParamId;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::EpochLog;
use crate::models::Net;
use crate::models::checkpoint::{Checkpoint, to_bytes};
use crate::params::{self, Kind};
use crate::{Error, Result, util};

/// Tensors by checkpoint name: (shape, values).
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Metadata key of the state file that holds [`StateMeta`] as JSON.
const META_KEY: &str = "sptune_resume";
/// Prefix of the momentum tensors' names in the state file.
const MOMENTUM: &str = "momentum/";
/// Version of the state layout; a state of another version is refused.
const VERSION: u32 = 1;

/// The position of a ChaCha8 stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    /// The 32-byte seed, hex.
    pub seed: String,
    /// The stream number.
    pub stream: u64,
    /// The word position (a u128, as a decimal string: JSON numbers stop at 2^53).
    pub word_pos: String,
}

impl RngState {
    /// The position of `rng`.
    pub fn of(rng: &ChaCha8Rng) -> Self {
        RngState {
            seed: rng.get_seed().iter().map(|b| format!("{b:02x}")).collect(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    /// A generator at this position.
    pub fn restore(&self) -> Result<ChaCha8Rng> {
        use rand::SeedableRng;
        let bad = || {
            Error::Other(format!(
                "resume state: bad random-stream seed {:?}",
                self.seed
            ))
        };
        if self.seed.len() != 64 {
            return Err(bad());
        }
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = u8::from_str_radix(&self.seed[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        let pos: u128 = self.word_pos.parse().map_err(|_| {
            Error::Other(format!(
                "resume state: bad random-stream position {:?}",
                self.word_pos
            ))
        })?;
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(pos);
        Ok(rng)
    }
}

/// The best validation epoch so far.
#[derive(Clone, Debug)]
pub struct Best {
    /// 1-based epoch.
    pub epoch: usize,
    /// Its validation accuracy.
    pub val_acc: f64,
    /// Its network's tensors.
    pub weights: Tensors,
}

/// A training state read back from a run directory.
#[derive(Clone, Debug)]
pub struct TrainState {
    /// Epochs completed.
    pub epochs_done: usize,
    /// Their logs.
    pub logs: Vec<EpochLog>,
    /// The shuffling/augmentation stream after the last completed epoch.
    pub rng: RngState,
    /// The network's tensors after the last completed epoch.
    pub weights: Tensors,
    /// SGD momentum per parameter name (the optimizer's layout).
    pub momentum: Tensors,
    /// The best validation epoch so far.
    pub best: Option<Best>,
    /// The run's first step loss (the divergence guard's reference).
    pub first_loss: Option<f64>,
}

/// What the training loop hands to the state writer at an epoch end.
pub struct EpochState<'a> {
    /// Epochs completed.
    pub epochs_done: usize,
    /// Their logs.
    pub logs: &'a [EpochLog],
    /// The random stream's position.
    pub rng: RngState,
    /// The network after the epoch.
    pub net: &'a Net,
    /// SGD momentum per parameter name.
    pub momentum: Tensors,
    /// The best epoch so far: (epoch, validation accuracy, its network, whether it is this
    /// epoch, i.e. its file must be written now).
    pub best: Option<(usize, f64, &'a Net, bool)>,
    /// The run's first step loss (the divergence guard's reference).
    pub first_loss: Option<f64>,
}

#[derive(Serialize, Deserialize)]
struct StateMeta {
    version: u32,
    epochs_done: usize,
    logs: Vec<EpochLog>,
    rng: RngState,
    best_epoch: Option<usize>,
    best_val_acc: Option<f64>,
    first_loss: Option<f64>,
}

/// The folder of the resume state in run directory `run_dir`.
pub fn state_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("resume")
}

fn state_file(dir: &Path) -> PathBuf {
    dir.join("state.safetensors")
}

fn best_file(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("best-e{epoch:04}.safetensors"))
}

/// The network's tensors in checkpoint layout (parameters and running statistics).
pub fn net_tensors(net: &Net) -> Tensors {
    params::values(net)
        .into_iter()
        .map(|(i, v)| (i.name, (i.shape, v)))
        .collect()
}

/// Parameter id -> checkpoint name, for the optimizer's state.
pub fn names_by_id(net: &Net) -> HashMap<ParamId, String> {
    params::table(net)
        .into_iter()
        .filter(|i| i.kind == Kind::Param)
        .map(|i| (i.id, i.name))
        .collect()
}

fn tensor_list(t: &Tensors, prefix: &str) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    t.iter()
        .map(|(n, (s, v))| (format!("{prefix}{n}"), s.clone(), v.clone()))
        .collect()
}

/// Writes the state of `s` into `dir` (created if needed); see the module doc for the order.
pub fn save(dir: &Path, s: &EpochState<'_>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    if let Some((epoch, _, net, true)) = s.best {
        let bytes = to_bytes(&tensor_list(&net_tensors(net), ""), &[], HashMap::new())?;
        util::write_atomic(&best_file(dir, epoch), &bytes)?;
    }
    let meta = StateMeta {
        version: VERSION,
        epochs_done: s.epochs_done,
        logs: s.logs.to_vec(),
        rng: s.rng.clone(),
        best_epoch: s.best.map(|b| b.0),
        best_val_acc: s.best.map(|b| b.1),
        first_loss: s.first_loss,
    };
    let json =
        serde_json::to_string(&meta).map_err(|e| Error::Other(format!("resume state: {e}")))?;
    let mut tensors = tensor_list(&net_tensors(s.net), "");
    tensors.extend(tensor_list(&s.momentum, MOMENTUM));
    let bytes = to_bytes(&tensors, &[], HashMap::from([(META_KEY.to_string(), json)]))?;
    util::write_atomic(&state_file(dir), &bytes)?;
    // the state now names only the current best file: older ones can go
    let keep = s.best.map(|b| best_file(dir, b.0));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("best-e")
                && name.ends_with(".safetensors")
                && Some(&p) != keep.as_ref()
            {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    Ok(())
}

/// Whether `dir` holds a saved state (without reading it).
pub fn has_state(dir: &Path) -> bool {
    state_file(dir).is_file()
}

/// Reads the state in `dir`; `None` when there is none (the run died before its first epoch
/// ended, or never started).
pub fn read(dir: &Path) -> Result<Option<TrainState>> {
    let path = state_file(dir);
    if !path.exists() {
        return Ok(None);
    }
    let ck = Checkpoint::read(&path)?;
    let bad = |m: String| Error::format(&path, m);
    let json = ck.metadata.get(META_KEY).ok_or_else(|| {
        bad(format!(
            "no '{META_KEY}' metadata: not an sptune resume state"
        ))
    })?;
    let meta: StateMeta =
        serde_json::from_str(json).map_err(|e| bad(format!("metadata '{META_KEY}': {e}")))?;
    if meta.version != VERSION {
        return Err(bad(format!(
            "resume state version {} (this sptune reads {VERSION})",
            meta.version
        )));
    }
    if meta.logs.len() != meta.epochs_done {
        return Err(bad(format!(
            "{} epoch logs for {} epochs done",
            meta.logs.len(),
            meta.epochs_done
        )));
    }
    let (mut weights, mut momentum) = (Tensors::new(), Tensors::new());
    for (n, t) in ck.tensors {
        match n.strip_prefix(MOMENTUM) {
            Some(p) => momentum.insert(p.to_string(), t),
            None => weights.insert(n, t),
        };
    }
    let best = match (meta.best_epoch, meta.best_val_acc) {
        (Some(epoch), Some(val_acc)) => {
            let bp = best_file(dir, epoch);
            let b = Checkpoint::read(&bp)?;
            Some(Best {
                epoch,
                val_acc,
                weights: b.tensors,
            })
        }
        _ => None,
    };
    Ok(Some(TrainState {
        epochs_done: meta.epochs_done,
        logs: meta.logs,
        rng: meta.rng,
        weights,
        momentum,
        best,
        first_loss: meta.first_loss,
    }))
}

/// Removes the state folder (after a run completed and wrote its outputs).
pub fn clear(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}
