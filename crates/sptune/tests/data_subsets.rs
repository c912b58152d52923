//! Class selection, few-shot subsets, validation hold-outs, statistics.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use sptune::data::{
    Dataset, channel_stats, parse_classes, per_class, select_classes, split_val, take_first,
};
use std::collections::HashSet;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

fn words(ws: &[&str]) -> Vec<String> {
    ws.iter().map(|s| s.to_string()).collect()
}

/// 1x1x1 images whose single pixel is the image's index, so images can be identified.
fn tagged(labels: &[usize], classes: Vec<String>) -> Dataset {
    let images = (0..labels.len()).map(|i| i as f32).collect();
    Dataset::new(images, labels.to_vec(), classes, 1, 1, 1).unwrap()
}

fn ids(ds: &Dataset) -> Vec<usize> {
    ds.images.iter().map(|&v| v as usize).collect()
}

#[test]
fn parse_classes_forms() {
    let ten = names(10);
    assert_eq!(parse_classes("0-4", &ten).unwrap(), vec![0, 1, 2, 3, 4]);
    assert_eq!(parse_classes("5,6,9", &ten).unwrap(), vec![5, 6, 9]);
    assert_eq!(parse_classes("0-2,7", &ten).unwrap(), vec![0, 1, 2, 7]);
    assert_eq!(parse_classes(" 9 , 1 ", &ten).unwrap(), vec![9, 1]);
    assert_eq!(parse_classes("7-7", &ten).unwrap(), vec![7]);
    let fm = words(&[
        "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
        "boot",
    ]);
    assert_eq!(parse_classes("shirt,bag", &fm).unwrap(), vec![6, 8]);
    // a name containing '-' is a name, not a range; names and indices mix
    assert_eq!(
        parse_classes("t-shirt,9,1-2", &fm).unwrap(),
        vec![0, 9, 1, 2]
    );
}

#[test]
fn numeric_class_names_refer_to_themselves() {
    // folder classes "10" and "2" sorted lexically: "10" is index 0, "2" is index 1
    let cls = words(&["10", "2", "3"]);
    assert_eq!(parse_classes("2", &cls).unwrap(), vec![1]);
    assert_eq!(parse_classes("0", &cls).unwrap(), vec![0]);
}

#[test]
fn parse_classes_errors() {
    let ten = names(10);
    let e = parse_classes("3,12", &ten).unwrap_err().to_string();
    assert!(
        e.contains("--classes") && e.contains("unknown class 12") && e.contains("0..9"),
        "{e}"
    );
    let e = parse_classes("8-11", &ten).unwrap_err().to_string();
    assert!(e.contains("11"), "{e}");
    let e = parse_classes("shirt", &words(&["bag", "coat"]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("shirt") && e.contains("bag") && e.contains("coat"),
        "{e}"
    );
    let e = parse_classes("1,2,1", &ten).unwrap_err().to_string();
    assert!(e.contains("twice"), "{e}");
    assert!(parse_classes("0-3,2", &ten).is_err());
    assert!(parse_classes("5-3", &ten).is_err());
    assert!(parse_classes("", &ten).is_err());
    assert!(parse_classes("1,,2", &ten).is_err());
    assert!(parse_classes("-1", &ten).is_err());
}

#[test]
fn select_classes_relabels_in_given_order() {
    let ds = tagged(&[0, 1, 2, 1, 0, 2], words(&["a", "b", "c"]));
    let s = select_classes(&ds, &[2, 0]).unwrap();
    assert_eq!(ids(&s), vec![0, 2, 4, 5]);
    assert_eq!(s.labels, vec![1, 0, 1, 0]);
    assert_eq!(s.classes, words(&["c", "a"]));
    assert!(select_classes(&ds, &[3]).is_err());
    assert!(select_classes(&ds, &[1, 1]).is_err());
    assert!(select_classes(&ds, &[]).is_err());
}

fn uneven() -> Dataset {
    // class 0: 5 images, class 1: 3 images, class 2: 7 images, interleaved
    let mut labels = Vec::new();
    labels.extend([0usize; 5]);
    labels.extend([1usize; 3]);
    labels.extend([2usize; 7]);
    labels.shuffle(&mut ChaCha8Rng::seed_from_u64(99));
    tagged(&labels, names(3))
}

#[test]
fn per_class_counts_and_membership() {
    let ds = uneven();
    let s = per_class(&ds, 4, 1).unwrap();
    assert_eq!(s.per_class_counts(), vec![4, 3, 4]);
    let got = ids(&s);
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), got.len());
    for (k, &i) in got.iter().enumerate() {
        assert_eq!(s.labels[k], ds.labels[i]);
    }
    // the definition: a ChaCha8 shuffle of 0..len, then the first n of each class
    let mut order: Vec<usize> = (0..ds.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(1));
    let mut taken = [0; 3];
    let expect: Vec<usize> = order
        .into_iter()
        .filter(|&i| {
            taken[ds.labels[i]] += 1;
            taken[ds.labels[i]] <= 4
        })
        .collect();
    assert_eq!(got, expect);
}

#[test]
fn per_class_is_deterministic_per_seed() {
    let ds = uneven();
    let a = per_class(&ds, 2, 7).unwrap();
    let b = per_class(&ds, 2, 7).unwrap();
    assert_eq!(ids(&a), ids(&b));
    let differs = (8..20).any(|seed| {
        let c = per_class(&ds, 2, seed).unwrap();
        ids(&c).into_iter().collect::<HashSet<_>>() != ids(&a).into_iter().collect::<HashSet<_>>()
    });
    assert!(differs);
}

#[test]
fn per_class_empty_class_is_named() {
    let ds = tagged(&[0, 0, 2], words(&["cat", "dog", "eel"]));
    let e = per_class(&ds, 1, 0).unwrap_err().to_string();
    assert!(e.contains("dog"), "{e}");
    assert!(per_class(&uneven(), 0, 0).is_err());
}

#[test]
fn split_val_sizes_disjoint_stratified() {
    let ds = uneven(); // 15 images: 5 / 3 / 7
    let (tr, va) = split_val(&ds, 0.2, 3).unwrap();
    assert_eq!(va.len(), 3); // round(0.2 * 15)
    assert_eq!(tr.len(), 12);
    let (a, b): (HashSet<_>, HashSet<_>) = (
        ids(&tr).into_iter().collect(),
        ids(&va).into_iter().collect(),
    );
    assert!(a.is_disjoint(&b));
    assert_eq!(a.union(&b).count(), 15);
    // proportional quotas: 5*3/15 = 1, 3*3/15 = 0.6, 7*3/15 = 1.4 -> floors 1,0,1 + largest
    // remainder (class 1) -> 1,1,1
    assert_eq!(va.per_class_counts(), vec![1, 1, 1]);
    // labels follow their images
    for (k, &i) in ids(&va).iter().enumerate() {
        assert_eq!(va.labels[k], ds.labels[i]);
    }
    // same seed, same split
    let (_, va2) = split_val(&ds, 0.2, 3).unwrap();
    assert_eq!(ids(&va), ids(&va2));
    let (tr0, va0) = split_val(&ds, 0.0, 3).unwrap();
    assert_eq!((tr0.len(), va0.len()), (15, 0));
    assert_eq!(split_val(&ds, 0.5, 3).unwrap().1.len(), 8); // round(7.5)
    assert!(split_val(&ds, 1.0, 3).is_err());
    assert!(split_val(&ds, -0.1, 3).is_err());
    assert!(split_val(&ds, f64::NAN, 3).is_err());
}

#[test]
fn split_val_seed_changes_the_split() {
    let labels: Vec<usize> = (0..100).map(|i| i % 4).collect();
    let ds = tagged(&labels, names(4));
    let (_, a) = split_val(&ds, 0.3, 1).unwrap();
    let (_, b) = split_val(&ds, 0.3, 2).unwrap();
    assert_eq!((a.len(), b.len()), (30, 30));
    assert_ne!(ids(&a), ids(&b));
}

#[test]
fn take_first_keeps_file_order() {
    let ds = uneven();
    let t = take_first(&ds, 4);
    assert_eq!(ids(&t), vec![0, 1, 2, 3]);
    assert_eq!(t.labels, ds.labels[..4].to_vec());
    assert_eq!(take_first(&ds, 100).len(), 15);
}

#[test]
fn channel_stats_by_hand() {
    // two 2-channel 1x2 images: channel 0 values 0, 1, 2, 3 ; channel 1 values 1, 1, 1, 1
    let images = vec![0.0, 1.0, 1.0, 1.0, 2.0, 3.0, 1.0, 1.0];
    let ds = Dataset::new(images, vec![0, 0], names(1), 2, 1, 2).unwrap();
    let (m, s) = channel_stats(&ds);
    assert!(
        (m[0] - 1.5).abs() < 1e-6 && (m[1] - 1.0).abs() < 1e-6,
        "{m:?}"
    );
    // population std of 0,1,2,3 = sqrt(1.25)
    assert!(
        (s[0] - 1.25f32.sqrt()).abs() < 1e-6 && s[1].abs() < 1e-6,
        "{s:?}"
    );
}

#[test]
fn inconsistent_datasets_are_rejected() {
    let cls = names(2);
    assert!(Dataset::new(vec![0.0; 3], vec![0, 1], cls.clone(), 1, 1, 1).is_err());
    assert!(Dataset::new(vec![0.0; 2], vec![0, 2], cls.clone(), 1, 1, 1).is_err());
    assert!(Dataset::new(vec![], vec![], cls.clone(), 1, 0, 1).is_err());
    // a hand-edited set with a label outside `classes` errors instead of panicking
    let mut ds = tagged(&[0, 1], cls);
    ds.labels[1] = 5;
    assert!(select_classes(&ds, &[0]).is_err());
    assert!(per_class(&ds, 1, 0).is_err());
    assert!(split_val(&ds, 0.5, 0).is_err());
}
