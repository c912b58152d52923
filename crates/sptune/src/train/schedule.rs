//! Learning-rate schedules.

use serde::{Deserialize, Serialize};

/// How the learning rate evolves over epochs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// Constant learning rate.
    Constant,
    /// Multiplied by `gamma` at 50 % and 75 % of the epochs (the paper's step schedule).
    #[default]
    Step,
    /// Cosine annealing from `lr` to 0 over the epochs.
    Cosine,
}

impl crate::util::Choice for Schedule {
    const ALL: &'static [Self] = &[Schedule::Step, Schedule::Cosine, Schedule::Constant];
    fn name(self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::Step => "step",
            Schedule::Cosine => "cosine",
        }
    }
}

impl Schedule {
    /// Learning rate for 0-based `epoch` of `epochs`.
    pub fn lr(self, base: f64, gamma: f64, epoch: usize, epochs: usize) -> f64 {
        match self {
            Schedule::Constant => base,
            Schedule::Step => {
                let m1 = epochs.div_ceil(2);
                let m2 = (3 * epochs).div_ceil(4);
                let drops = (epoch >= m1 && epochs > 1) as i32 + (epoch >= m2 && m2 > m1) as i32;
                base * gamma.powi(drops)
            }
            Schedule::Cosine => {
                let t = epoch as f64 / epochs.max(1) as f64;
                base * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Schedule;
    #[test]
    fn step_drops_at_half_and_three_quarters() {
        let lrs: Vec<f64> = (0..8).map(|e| Schedule::Step.lr(1.0, 0.1, e, 8)).collect();
        let want = [1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01];
        for (a, b) in lrs.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{lrs:?}");
        }
    }
    #[test]
    fn cosine_starts_at_base_and_halves_midway() {
        assert_eq!(Schedule::Cosine.lr(0.2, 0.1, 0, 10), 0.2);
        assert!((Schedule::Cosine.lr(0.2, 0.1, 5, 10) - 0.1).abs() < 1e-12);
    }
}
