//! Segmentation metrics from one confusion matrix over the labelled pixels.
//!
//! `counts[t][p]` counts pixels of true class `t` predicted as `p`; pixels whose true label is
//! [`IGNORE`](super::IGNORE) are left out. For class `c`:
//! `IoU_c = TP / (TP + FP + FN)` with `TP = counts[c][c]`, `FP = Σ_{t≠c} counts[t][c]`,
//! `FN = Σ_{p≠c} counts[c][p]`; a class absent from both the truth and the predictions (union
//! 0) has no IoU and is left out of the mean (mIoU, as torchvision's reference scripts and
//! the VOC evaluation do). Pixel accuracy is `Σ_c TP_c / Σ counts`.

use super::IGNORE;
use crate::{Error, Result};

/// A confusion matrix over `classes` classes.
#[derive(Clone, Debug, PartialEq)]
pub struct Confusion {
    classes: usize,
    /// Row-major `[true][predicted]`.
    counts: Vec<u64>,
}

impl Confusion {
    /// An empty matrix.
    pub fn new(classes: usize) -> Confusion {
        Confusion {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    /// Classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Pixels of true class `t` predicted as `p`.
    pub fn count(&self, t: usize, p: usize) -> u64 {
        self.counts[t * self.classes + p]
    }

    /// Adds one image: `truth` and `predicted` are its pixels' classes (same length);
    /// [`IGNORE`] in `truth` skips the pixel. A true or predicted class past the matrix is an
    /// error naming it.
    pub fn add(&mut self, truth: &[u8], predicted: &[u8]) -> Result<()> {
        if truth.len() != predicted.len() {
            return Err(Error::invalid(
                "prediction",
                format!(
                    "{} pixels against a mask of {}",
                    predicted.len(),
                    truth.len()
                ),
            ));
        }
        let k = self.classes;
        for (&t, &p) in truth.iter().zip(predicted) {
            if t == IGNORE {
                continue;
            }
            let (t, p) = (t as usize, p as usize);
            if t >= k || p >= k {
                return Err(Error::invalid(
                    "mask",
                    format!("class {} outside the {k} classes", t.max(p)),
                ));
            }
            self.counts[t * k + p] += 1;
        }
        Ok(())
    }

    /// Adds another matrix of the same classes.
    pub fn merge(&mut self, other: &Confusion) {
        assert_eq!(
            self.classes, other.classes,
            "confusion matrices of different classes"
        );
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// Labelled pixels counted.
    pub fn pixels(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// IoU of each class; `None` for a class with no pixel in the truth or the predictions.
    pub fn iou(&self) -> Vec<Option<f64>> {
        let k = self.classes;
        (0..k)
            .map(|c| {
                let tp = self.count(c, c);
                let row: u64 = (0..k).map(|p| self.count(c, p)).sum();
                let col: u64 = (0..k).map(|t| self.count(t, c)).sum();
                let union = row + col - tp;
                (union > 0).then(|| tp as f64 / union as f64)
            })
            .collect()
    }

    /// Mean IoU over the classes that have one; NaN when no pixel was counted.
    pub fn miou(&self) -> f64 {
        let v: Vec<f64> = self.iou().into_iter().flatten().collect();
        if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    }

    /// Correctly classified labelled pixels over all labelled pixels; NaN when none.
    pub fn pixel_accuracy(&self) -> f64 {
        let n = self.pixels();
        if n == 0 {
            return f64::NAN;
        }
        (0..self.classes).map(|c| self.count(c, c)).sum::<u64>() as f64 / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3-class example computed by hand. Truth and prediction of 10 pixels (two ignored):
    ///
    /// ```text
    /// truth      0 0 0 1 1 1 2 2 255 255
    /// predicted  0 0 1 1 1 0 2 1 2   0
    /// ```
    ///
    /// Counted (ignored pixels dropped): `[true][pred]` = `[[2,1,0],[1,2,0],[0,1,1]]`.
    /// Class 0: TP 2, FP 1 (a 1 predicted 0), FN 1 (a 0 predicted 1): IoU 2/4 = 0.5.
    /// Class 1: TP 2, FP 2 (a 0 and a 2 predicted 1), FN 1: IoU 2/5 = 0.4.
    /// Class 2: TP 1, FP 0, FN 1: IoU 1/2 = 0.5. mIoU 1.4/3; pixel accuracy 5/8.
    #[test]
    fn hand_computed_example() {
        let truth = [0, 0, 0, 1, 1, 1, 2, 2, 255, 255];
        let pred = [0, 0, 1, 1, 1, 0, 2, 1, 2, 0];
        let mut c = Confusion::new(3);
        c.add(&truth, &pred).unwrap();
        let expect = [[2, 1, 0], [1, 2, 0], [0, 1, 1]];
        for (t, row) in expect.iter().enumerate() {
            for (p, &n) in row.iter().enumerate() {
                assert_eq!(c.count(t, p), n, "[{t}][{p}]");
            }
        }
        assert_eq!(c.pixels(), 8);
        let iou = c.iou();
        for (got, want) in iou.iter().zip([0.5, 0.4, 0.5]) {
            assert!((got.unwrap() - want).abs() < 1e-12, "{got:?} vs {want}");
        }
        assert!((c.miou() - 1.4 / 3.0).abs() < 1e-12);
        assert!((c.pixel_accuracy() - 5.0 / 8.0).abs() < 1e-12);
    }

    /// A class absent from truth and predictions has no IoU and does not pull the mean down;
    /// one that is predicted but absent from the truth has IoU 0 and does.
    #[test]
    fn absent_classes() {
        let mut c = Confusion::new(4);
        c.add(&[0, 0, 1, 1], &[0, 0, 1, 3]).unwrap();
        let iou = c.iou();
        assert_eq!(iou[2], None);
        assert_eq!(iou[3], Some(0.0));
        // class 0: 1; class 1: TP 1, FN 1 -> 1/2; class 3: 0 -> mean (1 + 0.5 + 0) / 3
        assert!((c.miou() - 0.5).abs() < 1e-12);
        assert!(Confusion::new(2).miou().is_nan());
    }

    #[test]
    fn refuses_classes_past_the_matrix() {
        let mut c = Confusion::new(2);
        let e = c.add(&[0, 2], &[0, 0]).unwrap_err().to_string();
        assert!(e.contains("class 2"), "{e}");
        assert!(c.add(&[0], &[0, 1]).is_err());
    }
}
