//! The `forgetting` section: source forgetting per scheme, mean over seeds with its interval.

use super::chart::{CatItem, Palette, category_plot};
use super::{empty, figure, section};
use crate::study::results::StudyResults;

pub(super) fn forgetting_section(r: &StudyResults, pal: &Palette) -> String {
    let items: Vec<CatItem> = r
        .schemes
        .iter()
        .filter_map(|s| {
            let iv = s.forgetting_ci?;
            iv.mean.is_finite().then(|| CatItem {
                name: s.scheme.clone(),
                color: pal.index(&s.scheme),
                iv,
                seeds: s.forgetting.clone(),
            })
        })
        .collect();
    let body = if items.is_empty() {
        empty("Source forgetting was not measured in this study.")
    } else {
        figure(
            category_plot(&items, "forgetting (points of source acc.)", true),
            "Source forgetting per scheme: points of source-task accuracy lost after \
             fine-tuning (lower is better; below 0 the source accuracy improved). Mean over \
             seeds with its 95 % interval and each seed's value.",
        )
    };
    section("forgetting", "Source forgetting", &body)
}
