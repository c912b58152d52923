//! One list per option: every enumerated option's spelling is the same in the library
//! (`Choice::name`, what error messages list), in config files (serde) and on the command line
//! (clap's `ValueEnum`, what `--help` lists), and every spelling parses back to its value.

use clap::ValueEnum;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sptune::Choice;
use sptune::fisher::Estimator;
use sptune::regularizer::{Anchor, FisherNormalize, Scheme};
use sptune::train::{BnMode, Schedule};

fn agree<T>(what: &str)
where
    T: Choice + ValueEnum + Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let clap: Vec<String> = T::value_variants()
        .iter()
        .map(|v| v.to_possible_value().unwrap().get_name().to_string())
        .collect();
    let ours: Vec<String> = T::ALL.iter().map(|v| v.name().to_string()).collect();
    let mut a = clap.clone();
    let mut b = ours.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b, "{what}: clap lists {clap:?}, the library {ours:?}");
    for &v in T::ALL {
        let json = serde_json::to_value(v).unwrap();
        assert_eq!(
            json,
            serde_json::json!(v.name()),
            "{what}: serde spells {v:?} {json}"
        );
        assert_eq!(serde_json::from_value::<T>(json).unwrap(), v);
        assert_eq!(T::parse_for(what, v.name()).unwrap(), v);
        assert_eq!(T::from_str(v.name(), false).unwrap(), v);
    }
    let err = T::parse_for(what, "no-such-value").unwrap_err().to_string();
    assert!(
        err.contains(what) && ours.iter().all(|n| err.contains(n.as_str())),
        "{err}"
    );
}

#[test]
fn library_serde_and_clap_spell_every_option_alike() {
    agree::<Scheme>("--reg");
    agree::<Anchor>("--anchor");
    agree::<FisherNormalize>("--fisher-normalize");
    agree::<BnMode>("--bn");
    agree::<Schedule>("--schedule");
    agree::<Estimator>("--estimator");
}
