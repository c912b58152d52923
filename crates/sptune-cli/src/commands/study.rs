//! `sptune study`, `sptune report` and `sptune runs`: thin over [`sptune::study`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use sptune::study::store::Store;
use sptune::study::{self, RunOptions, StudyConfig};

use super::Global;
use crate::args::{AutoArgs, ReportArgs, RunsArgs, RunsCommand, StudyArgs};

/// Runs (or resumes) a study and prints its main table.
pub fn run(a: StudyArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let mut cfg = match (&a.config, &a.preset) {
        (Some(p), _) => StudyConfig::from_toml(p)?,
        (None, Some(name)) => StudyConfig::preset(name)?,
        (None, None) => anyhow::bail!("study needs --config FILE or --preset NAME"),
    };
    if let Some(n) = a.seeds {
        cfg.seeds = n;
    }
    if let Some(n) = a.trials {
        cfg.search.trials = n;
    }
    if let Some(n) = a.epochs {
        cfg.train.epochs = n;
    }
    if let Some(s) = a.schemes {
        cfg.schemes = s;
    }
    set_objective(&mut cfg, a.objective, a.max_forgetting, a.tradeoff_lambda);
    cfg.validate()?;
    let dir = a
        .dir
        .unwrap_or_else(|| PathBuf::from(format!("runs/study-{}", cfg.name)));
    anyhow::ensure!(a.jobs >= 1, "invalid value for --jobs: must be at least 1");
    let quiet = g.quiet;
    let role = if a.helper {
        study::Role::Helper
    } else {
        study::Role::Leader
    };
    // the leader claims the folder (checks, creates it, locks it) before its helpers start
    let _lock = match role {
        study::Role::Leader => Some(study::claim(&cfg, &dir)?),
        study::Role::Helper => None,
    };
    let helpers = if role == study::Role::Leader && a.jobs > 1 {
        spawn_helpers(&cfg, &dir, a.jobs - 1, g)?
    } else {
        vec![]
    };
    let o = study::run(
        &cfg,
        &dir,
        &g.device,
        RunOptions {
            max_trials: a.max_trials,
            role,
            restart_from_source: a.restart_from.is_some(),
            ..RunOptions::default()
        },
        &mut |line| {
            if !quiet {
                eprintln!("{line}");
            }
        },
    );
    for mut h in helpers {
        if o.is_err() {
            let _ = h.kill();
        }
        let _ = h.wait();
    }
    let o = o?;
    if role == study::Role::Helper {
        return Ok(ExitCode::SUCCESS);
    }
    if g.json {
        println!("{}", serde_json::to_string_pretty(&o.results)?);
    } else {
        println!("{}", o.markdown);
        if o.complete {
            println!("report: {}", study::report_path(&dir).display());
        } else {
            println!(
                "stopped before the end; run the same command again to resume ({})",
                study::store_path(&dir).display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--objective`, `--max-forgetting` and `--tradeoff-lambda` over a study's search section: a
/// budget alone means `budget`, a λ alone `tradeoff`.
fn set_objective(
    cfg: &mut StudyConfig,
    objective: Option<study::config::Objective>,
    max_forgetting: Option<f64>,
    lambda: Option<f64>,
) {
    use study::config::Objective;
    if let Some(m) = max_forgetting {
        cfg.search.max_forgetting = m;
    }
    if let Some(l) = lambda {
        cfg.search.tradeoff_lambda = l;
    }
    cfg.search.objective = match (objective, max_forgetting, lambda) {
        (Some(o), _, _) => o,
        (None, Some(_), _) => Objective::Budget,
        (None, None, Some(_)) => Objective::Tradeoff,
        (None, None, None) => cfg.search.objective,
    };
}

/// Starts `n` helper processes on the study in `dir` (its resolved config written first, as
/// the helpers read it), with this process's limits. On Linux each helper gets SIGTERM when
/// this process ends, however it ends; elsewhere a helper stops once the leader's lock is
/// free ([`sptune::study::lock`]).
fn spawn_helpers(
    cfg: &StudyConfig,
    dir: &Path,
    n: usize,
    g: &Global,
) -> anyhow::Result<Vec<std::process::Child>> {
    let text = study::config_text(cfg)?;
    sptune::util::write_atomic(&study::config_path(dir), text.as_bytes())?;
    let exe = std::env::current_exe().context("locating the sptune binary")?;
    (0..n)
        .map(|i| {
            let log = std::fs::File::create(dir.join(format!("helper-{}.log", i + 1)))
                .with_context(|| format!("creating a log in {}", dir.display()))?;
            let mut cmd = std::process::Command::new(&exe);
            die_with_parent(&mut cmd);
            cmd.args(["--quiet", "--threads", &g.threads.max(1).to_string()])
                .arg("--max-pixels")
                .arg(sptune::runtime::max_pixels().to_string())
                .arg("--max-data-mb")
                .arg((sptune::runtime::max_data_bytes() >> 20).to_string())
                .arg("--cache-mb")
                .arg(sptune::runtime::cache_budget_mb().to_string())
                .arg("study")
                .arg("--config")
                .arg(study::config_path(dir))
                .arg("--dir")
                .arg(dir)
                .arg("--helper")
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting a helper process")
        })
        .collect()
}

/// Asks the kernel to send the child SIGTERM when this process ends (Linux's parent-death
/// signal); the child also exits at once if this process is already gone.
fn die_with_parent(cmd: &mut std::process::Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: prctl, getppid and _exit are async-signal-safe; nothing is allocated.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// The study file and folder of a `report`/`runs` argument (the folder or its study file).
fn study_file(study: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (file, dir) = if study.is_dir() {
        (study::store_path(study), study.to_path_buf())
    } else {
        let dir = study.parent().unwrap_or(Path::new(".")).to_path_buf();
        (study.to_path_buf(), dir)
    };
    anyhow::ensure!(file.is_file(), "{}: no study file", file.display());
    Ok((file, dir))
}

fn open(study: &Path) -> anyhow::Result<(Store, StudyConfig, PathBuf)> {
    let (file, dir) = study_file(study)?;
    let store = Store::open_existing(&file)?;
    let text = store.config()?;
    let cfg = StudyConfig::from_toml_text(&text, &file)?;
    Ok((store, cfg, dir))
}

/// Writes the report of a study folder from its stored trials.
pub fn report(a: ReportArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let (file, dir) = study_file(&a.study)?;
    let (results, written) = study::write_report(&file, &dir, a.out.as_deref())?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&written)?);
    } else {
        println!("{}", study::report::markdown(&results));
        for w in written {
            println!("wrote {}", w.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Lists or shows trials.
pub fn runs(a: RunsArgs, g: &Global) -> anyhow::Result<ExitCode> {
    match a.command {
        RunsCommand::List { study } => {
            let (store, _, _) = open(&study)?;
            let trials = store.trials()?;
            if g.json {
                let v: Vec<_> = trials.iter().map(trial_json).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<28} {:<8} {:<12} {:>10} {:>8} {:>8} {:>8}",
                "key", "status", "scheme", "alpha", "lr", "metric", "seconds"
            );
            for t in &trials {
                let m = t.metrics.as_ref();
                let metric = m
                    .and_then(|m| m["test_acc"].as_f64().or(m["val_acc"].as_f64()))
                    .map(|v| format!("{:.2}%", 100.0 * v))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<28} {:<8} {:<12} {:>10} {:>8} {:>8} {:>8}",
                    t.key,
                    format!("{:?}", t.status).to_lowercase(),
                    t.scheme,
                    t.params["alpha"]
                        .as_f64()
                        .map(|v| format!("{v:.3e}"))
                        .unwrap_or_default(),
                    t.params["lr"]
                        .as_f64()
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                    metric,
                    t.seconds
                        .map(|s| format!("{s:.1}"))
                        .unwrap_or_else(|| "-".into())
                );
            }
            let counts = store.counts()?;
            println!("{counts:?}");
        }
        RunsCommand::Compare { study, keys } => {
            let (store, _, _) = open(&study)?;
            let all = store.trials()?;
            let mut picked = vec![];
            for k in &keys {
                let hits: Vec<_> = all
                    .iter()
                    .filter(|t| &t.key == k || (k.ends_with('/') && t.key.starts_with(k.as_str())))
                    .collect();
                anyhow::ensure!(!hits.is_empty(), "{}: no trial {k:?}", study.display());
                picked.extend(hits);
            }
            if g.json {
                let v: Vec<_> = picked.iter().map(|t| trial_json(t)).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let f = |v: &serde_json::Value, scale: f64, unit: &str| {
                v.as_f64()
                    .map(|x| format!("{:.2}{unit}", scale * x))
                    .unwrap_or_else(|| "-".into())
            };
            println!(
                "{:<28} {:<8} {:>10} {:>9} {:>6} {:>7} {:>9} {:>9} {:>11} {:>7}",
                "key",
                "status",
                "alpha",
                "beta",
                "lr",
                "epochs",
                "val acc",
                "test acc",
                "forgetting",
                "seconds"
            );
            for t in picked {
                let m = t.metrics.clone().unwrap_or_default();
                let epochs = t
                    .epochs
                    .as_ref()
                    .and_then(|e| e.as_array().map(|a| a.len().to_string()))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<28} {:<8} {:>10} {:>9} {:>6} {:>7} {:>9} {:>9} {:>11} {:>7}",
                    t.key,
                    t.status.to_string(),
                    t.params["alpha"]
                        .as_f64()
                        .map(|v| format!("{v:.3e}"))
                        .unwrap_or_default(),
                    t.params["beta"]
                        .as_f64()
                        .map(|v| format!("{v:.0e}"))
                        .unwrap_or_default(),
                    t.params["lr"]
                        .as_f64()
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                    epochs,
                    f(&m["val_acc"], 100.0, "%"),
                    f(&m["test_acc"], 100.0, "%"),
                    f(&m["forgetting"], 1.0, ""),
                    t.seconds
                        .map(|s| format!("{s:.1}"))
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
        RunsCommand::Show { study, key } => {
            let (store, _, _) = open(&study)?;
            let t = store
                .get(&key)?
                .with_context(|| format!("{}: no trial {key:?}", study.display()))?;
            println!("{}", serde_json::to_string_pretty(&trial_json(&t))?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn trial_json(t: &sptune::study::store::Trial) -> serde_json::Value {
    serde_json::json!({
        "key": t.key, "phase": t.phase, "scheme": t.scheme, "seed": t.seed,
        "status": format!("{:?}", t.status).to_lowercase(), "params": t.params,
        "metrics": t.metrics, "epochs": t.epochs, "error": t.error, "seconds": t.seconds,
        "worker": t.worker, "host": t.host, "started_at": t.started_at,
        "finished_at": t.finished_at,
    })
}

/// `sptune auto`: a study with one final run, of the winner.
pub fn auto(a: AutoArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let mut cfg = StudyConfig {
        name: "auto".into(),
        schemes: a.schemes,
        ..StudyConfig::default()
    };
    cfg.source.init = Some(a.init.clone());
    cfg.source.init_arch = a.init_arch;
    cfg.target.data = a.data;
    cfg.target.classes = a.classes.unwrap_or_default();
    cfg.target.per_class = a.per_class;
    cfg.target.test_limit = a.test_limit;
    cfg.train.epochs = a.epochs;
    cfg.train.batch_size = a.batch_size;
    cfg.search.trials = a.trials;
    cfg.search.lr = a.lr;
    cfg.search.budget_minutes = a.budget;
    cfg.source.data = a.source_data;
    cfg.source.classes = a.source_classes;
    cfg.source.test_limit = a.source_test_limit;
    cfg.source.val_images = a.source_val_images;
    set_objective(&mut cfg, a.objective, a.max_forgetting, a.tradeoff_lambda);
    cfg.validate()?;
    let dir = a.dir.unwrap_or_else(|| {
        let stem = a
            .out
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "auto".into());
        a.out.with_file_name(format!("{stem}.auto"))
    });
    anyhow::ensure!(a.jobs >= 1, "invalid value for --jobs: must be at least 1");
    // claimed (checked, created, locked) before the helpers start
    let _lock = study::auto::prepare(&cfg, &dir, &a.out)?;
    let helpers = if a.jobs > 1 {
        spawn_helpers(&study::auto::study_config(&cfg), &dir, a.jobs - 1, g)?
    } else {
        vec![]
    };
    let quiet = g.quiet;
    let o = study::auto::auto(&cfg, &dir, &a.out, &g.device, &mut |line| {
        if !quiet {
            eprintln!("{line}");
        }
    });
    for mut h in helpers {
        if o.is_err() {
            let _ = h.kill();
        }
        let _ = h.wait();
    }
    let o = o?;
    if g.json {
        let v = serde_json::json!({
            "winner": sptune::Choice::name(o.winner), "point": o.point, "val_acc": o.val_acc,
            "val_forgetting": o.val_forgetting, "test_acc": o.test_acc,
            "test_forgetting": o.test_forgetting, "recommendation": o.recommendation,
            "out": o.out, "dir": dir,
            "interpolated": o.interpolated.as_ref().map(|ip| serde_json::json!({
                "scheme": sptune::Choice::name(ip.scheme), "point": ip.point, "a": ip.a,
                "val_acc": ip.val_acc, "val_forgetting": ip.val_forgetting,
                "sweep": ip.sweep, "returned": ip.returned,
            })),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", o.table);
        let forgot = |f: Option<f64>| f.map_or(String::new(), |f| format!(", forgetting {f:.2}"));
        if let Some(ip) = &o.interpolated {
            println!(
                "interpolated toward the source: {} ({}), a -> target validation %, \
                 source-validation forgetting:",
                sptune::Choice::name(ip.scheme),
                ip.point.describe()
            );
            for (x, acc, f) in &ip.sweep {
                println!("  a = {x:.1}: {:.2} %, {f:.2}", 100.0 * acc);
            }
        }
        match o.interpolated.as_ref().filter(|ip| ip.returned) {
            Some(ip) => println!(
                "chosen: {} ({}) interpolated at a = {}: validation {:.2}%, forgetting {:.2} \
                 -> test {:.2}%{} -> {}",
                sptune::Choice::name(ip.scheme),
                ip.point.describe(),
                ip.a,
                100.0 * ip.val_acc,
                ip.val_forgetting,
                100.0 * o.test_acc,
                forgot(o.test_forgetting),
                o.out.display()
            ),
            None => println!(
                "chosen: {} ({}): validation {:.2}%{} -> test {:.2}%{} -> {}",
                sptune::Choice::name(o.winner),
                o.point.describe(),
                100.0 * o.val_acc,
                forgot(o.val_forgetting),
                100.0 * o.test_acc,
                forgot(o.test_forgetting),
                o.out.display()
            ),
        }
        for line in &o.recommendation {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
