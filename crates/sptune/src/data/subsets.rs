//! Class subsets, few-shot subsets, validation hold-outs and data statistics.

use super::Dataset;
use crate::{Error, Result};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// `available` shortened for an error message: `0..9` when the names are exactly the
/// numbers 0..n-1, else the names (at most 20).
fn describe_available(available: &[String]) -> String {
    if available.is_empty() {
        return "none".into();
    }
    if available
        .iter()
        .enumerate()
        .all(|(i, n)| *n == i.to_string())
    {
        return format!("0..{}", available.len() - 1);
    }
    let mut s = available
        .iter()
        .take(20)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if available.len() > 20 {
        s.push_str(&format!(", ... ({} classes)", available.len()));
    } else {
        s.push_str(&format!(" (or indices 0..{})", available.len() - 1));
    }
    s
}

/// Parses a class selection: indices (`"0-4"`, `"5,6,9"`, `"0-2,7"`) and/or class names from
/// `available` (`"shirt,bag"`), comma separated, mixed freely. A token equal to a class name
/// means that class (names win over indices, so numeric class names refer to themselves);
/// otherwise a number is a class index and `a-b` an inclusive index range. The result keeps
/// the given order. Unknown classes, empty tokens, reversed ranges and duplicates are errors
/// (reported against `--classes`).
pub fn parse_classes(spec: &str, available: &[String]) -> Result<Vec<usize>> {
    let err = |msg: String| Error::invalid("--classes", msg);
    let unknown = |tok: &str| {
        err(format!(
            "unknown class {tok}; available: {}",
            describe_available(available)
        ))
    };
    let index = |tok: &str| -> Result<usize> {
        if let Some(i) = available.iter().position(|n| n == tok) {
            return Ok(i);
        }
        match tok.parse::<usize>() {
            Ok(i) if i < available.len() => Ok(i),
            _ => Err(unknown(tok)),
        }
    };
    if spec.trim().is_empty() {
        return Err(err("empty class list".into()));
    }
    let mut out: Vec<usize> = Vec::new();
    for tok in spec.split(',').map(str::trim) {
        if tok.is_empty() {
            return Err(err(format!("empty entry in \"{spec}\"")));
        }
        let range = tok
            .split_once('-')
            .filter(|_| !available.iter().any(|n| n == tok))
            .and_then(|(a, b)| {
                let (a, b) = (a.trim(), b.trim());
                let numeric = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
                (numeric(a) && numeric(b)).then_some((a, b))
            });
        let picked: Vec<usize> = match range {
            Some((a, b)) => {
                let (ia, ib) = (index(a)?, index(b)?);
                if ia > ib {
                    return Err(err(format!("range {tok} is reversed")));
                }
                (ia..=ib).collect()
            }
            None => vec![index(tok)?],
        };
        for i in picked {
            if out.contains(&i) {
                return Err(err(format!(
                    "class {} listed twice in \"{spec}\"",
                    available[i]
                )));
            }
            out.push(i);
        }
    }
    Ok(out)
}

/// Keeps only the images whose label is in `classes` (file order preserved) and relabels
/// them: new label `i` is the position of the old label in `classes`; the new class names
/// are the selected names in that order.
pub fn select_classes(ds: &Dataset, classes: &[usize]) -> Result<Dataset> {
    ds.validate()?;
    let mut map = vec![usize::MAX; ds.classes.len()];
    for (new, &old) in classes.iter().enumerate() {
        let slot = map.get_mut(old).ok_or_else(|| {
            Error::invalid(
                "--classes",
                format!(
                    "unknown class index {old}; available: {}",
                    describe_available(&ds.classes)
                ),
            )
        })?;
        if *slot != usize::MAX {
            return Err(Error::invalid(
                "--classes",
                format!("class {} selected twice", ds.classes[old]),
            ));
        }
        *slot = new;
    }
    if classes.is_empty() {
        return Err(Error::invalid("--classes", "no class selected"));
    }
    let keep: Vec<usize> = (0..ds.len())
        .filter(|&i| map[ds.labels[i]] != usize::MAX)
        .collect();
    let mut out = ds.subset(&keep);
    for l in &mut out.labels {
        *l = map[*l];
    }
    out.classes = classes.iter().map(|&c| ds.classes[c].clone()).collect();
    Ok(out)
}

fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order
}

/// Few-shot subset: shuffles the set with `ChaCha8Rng::seed_from_u64(seed)`, then keeps the
/// first `n` images of each class, in the shuffled order. A class with fewer than `n` images
/// keeps all of them; a class with none is an error, as is `n == 0`.
pub fn per_class(ds: &Dataset, n: usize, seed: u64) -> Result<Dataset> {
    Ok(ds.subset(&per_class_indices(ds, n, seed)?))
}

/// The indices into `ds` that [`per_class`] keeps, in the shuffled order it keeps them.
pub fn per_class_indices(ds: &Dataset, n: usize, seed: u64) -> Result<Vec<usize>> {
    if n == 0 {
        return Err(Error::invalid("--per-class", "0 (must be at least 1)"));
    }
    ds.validate()?;
    let counts = ds.per_class_counts();
    if let Some(c) = counts.iter().position(|&c| c == 0) {
        return Err(Error::invalid(
            "--per-class",
            format!("class {} has no images", ds.classes[c]),
        ));
    }
    let mut taken = vec![0usize; counts.len()];
    Ok(shuffled(ds.len(), seed)
        .into_iter()
        .filter(|&i| {
            let t = &mut taken[ds.labels[i]];
            *t += 1;
            *t <= n
        })
        .collect())
}

/// `n` indices of `0..len` outside `used`, drawn by a `ChaCha8Rng::seed_from_u64(seed)`
/// shuffle, returned ascending (fewer when fewer are left).
pub fn held_out(len: usize, used: &[usize], n: usize, seed: u64) -> Vec<usize> {
    let mut taken = vec![false; len];
    for &i in used.iter().filter(|&&i| i < len) {
        taken[i] = true;
    }
    let mut out: Vec<usize> = shuffled(len, seed)
        .into_iter()
        .filter(|&i| !taken[i])
        .take(n)
        .collect();
    out.sort_unstable();
    out
}

/// Seeded, stratified hold-out: returns `(train, val)` with `round(fraction * len)` images in
/// `val`, spread over the classes in proportion to their sizes (largest remainders get the
/// leftover slots, ties to the lower class index); which images of a class go to `val` is
/// decided by a `ChaCha8Rng::seed_from_u64(seed)` shuffle. Both parts keep file order.
/// `fraction` must be in `[0, 1)`; 0 gives an empty `val`. A split that would leave `train`
/// empty is an error.
pub fn split_val(ds: &Dataset, fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(Error::invalid(
            "--val-fraction",
            format!("{fraction} (must be in [0, 1))"),
        ));
    }
    ds.validate()?;
    let len = ds.len();
    let k = (fraction * len as f64).round() as usize;
    if k == 0 {
        return Ok((ds.clone(), ds.empty_like()));
    }
    if k >= len {
        return Err(Error::invalid(
            "--val-fraction",
            format!("{fraction} of {len} images leaves none for training"),
        ));
    }
    // Largest-remainder apportionment of k slots over classes.
    let counts = ds.per_class_counts();
    let mut quota: Vec<usize> = counts.iter().map(|&c| c * k / len).collect();
    let mut rema: Vec<(usize, usize)> = counts
        .iter()
        .enumerate()
        .map(|(i, &c)| (c * k % len, i))
        .collect();
    rema.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let left = k - quota.iter().sum::<usize>();
    for &(_, i) in rema.iter().take(left) {
        quota[i] += 1;
    }
    let mut in_val = vec![false; len];
    for i in shuffled(len, seed) {
        let q = &mut quota[ds.labels[i]];
        if *q > 0 {
            *q -= 1;
            in_val[i] = true;
        }
    }
    let (val, train): (Vec<usize>, Vec<usize>) = (0..len).partition(|&i| in_val[i]);
    Ok((ds.subset(&train), ds.subset(&val)))
}

/// The first `n` images in file order (all of them when `n >= len`), no shuffling.
/// (Never panics; an inconsistent `ds`, see [`Dataset::validate`], gives a truncated copy.)
pub fn take_first(ds: &Dataset, n: usize) -> Dataset {
    let n = n.min(ds.len());
    let mut out = ds.empty_like();
    let end = (n * ds.image_len()).min(ds.images.len());
    out.images = ds.images[..end].to_vec();
    out.labels = ds.labels[..n].to_vec();
    out
}

/// Per-channel mean and (population) standard deviation over all pixels of all images.
/// An empty set gives mean 0 and std 1 per channel.
pub fn channel_stats(ds: &Dataset) -> (Vec<f32>, Vec<f32>) {
    let c = ds.channels;
    if ds.is_empty() || c == 0 {
        return (vec![0.0; c], vec![1.0; c]);
    }
    let plane = ds.height * ds.width;
    let mut sum = vec![0f64; c];
    let mut sq = vec![0f64; c];
    for img in ds.images.chunks_exact(c * plane) {
        for (ch, p) in img.chunks_exact(plane).enumerate() {
            let (s, q) = p.iter().fold((0f64, 0f64), |(s, q), &v| {
                let v = v as f64;
                (s + v, q + v * v)
            });
            sum[ch] += s;
            sq[ch] += q;
        }
    }
    let n = (ds.len() * plane) as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let std = sq
        .iter()
        .zip(&mean)
        .map(|(q, m)| ((q / n - m * m).max(0.0)).sqrt() as f32)
        .collect();
    (mean.into_iter().map(|m| m as f32).collect(), std)
}
