//! Studies: the seed's comparison as one run. For each scheme, hyperparameters chosen on a
//! validation split, then one fine-tune per seed with the chosen values, evaluated on target
//! accuracy, source forgetting and distance to `w0`; aggregated with intervals and drawn in a
//! report.

pub mod report;
pub mod results;
