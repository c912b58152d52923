//! The `accuracy` section: target test accuracy per scheme, mean over seeds with its interval.

use super::chart::{CatItem, Palette, category_plot};
use super::{empty, figure, section};
use crate::study::results::StudyResults;

pub(super) fn accuracy_section(r: &StudyResults, pal: &Palette) -> String {
    let items: Vec<CatItem> = r
        .schemes
        .iter()
        .map(|s| CatItem {
            name: s.scheme.clone(),
            color: pal.index(&s.scheme),
            iv: s.acc_ci,
            seeds: s.acc.clone(),
        })
        .filter(|i| i.iv.mean.is_finite())
        .collect();
    let body = if items.is_empty() {
        empty("No final runs, so there is no target accuracy to show.")
    } else {
        figure(
            category_plot(&items, "target test accuracy (%)", false),
            "Target test accuracy per scheme: mean over seeds (filled marker) with its 95 % \
             interval (whisker) and each seed's value (hollow markers, right of the mean).",
        )
    };
    section("accuracy", "Target accuracy", &body)
}
