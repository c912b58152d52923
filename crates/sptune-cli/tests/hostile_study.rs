//! Hostile use of studies (issue 25): a study that cannot start leaves nothing behind, a
//! resumed study never mixes inputs, and its processes never outlive it. Each case runs the
//! release binary on a tiny IDX set and an MLP source.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    assert_success, children_peak_rss, pretrain_mlp, processes_mentioning, run, s, sptune, tiny_idx,
};

/// A study of `l2-sp` from the checkpoint `init` on classes 2,3 of `data`, `trials` search
/// trials of `epochs` epochs, plus `extra` lines at the top.
fn study_file(
    t: &Path,
    name: &str,
    init: &Path,
    data: &Path,
    trials: usize,
    epochs: usize,
    extra: &str,
) -> PathBuf {
    let p = t.join(name);
    std::fs::write(
        &p,
        format!(
            "schemes = [\"l2-sp\"]\nseeds = 1\n{extra}\n[source]\ninit = {:?}\n[target]\n\
             data = {:?}\nclasses = \"2,3\"\nper_class = 6\n[train]\nepochs = {epochs}\n\
             batch_size = 4\n[search]\ntrials = {trials}\nhalving = false\n",
            s(init),
            s(data)
        ),
    )
    .unwrap();
    p
}

/// Exit 2, one error line naming every needle, nothing on stdout ([`common::assert_clean_failure`]).
fn assert_refused(r: &common::Run, needles: &[&str]) {
    common::assert_clean_failure(r, needles, None);
}

/// Waits until no process mentions `needle`, for at most `secs`; returns those left.
fn wait_gone(needle: &str, secs: u64) -> Vec<(u32, String)> {
    let t0 = Instant::now();
    loop {
        let left = processes_mentioning(needle);
        if left.is_empty() || t0.elapsed() > Duration::from_secs(secs) {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    tiny_idx(&data, 4, 24);
    let src = tmp.path().join("src.safetensors");
    pretrain_mlp(&data, &src);
    (tmp, data, src)
}

/// A study that cannot start (classes its data lacks, a data folder or source checkpoint
/// that does not exist) fails in seconds with one line naming the key, and creates no folder.
/// On main before the preflight, each exited 0 or left an empty folder.
#[test]
fn a_study_that_cannot_start_leaves_nothing() {
    let (tmp, data, src) = setup();
    let t = tmp.path();
    let missing = t.join("no-such");
    let cases: Vec<(&str, PathBuf, PathBuf, &str, Vec<&str>)> = vec![
        (
            "classes",
            src.clone(),
            data.clone(),
            "",
            vec!["target.classes", "7"],
        ),
        (
            "data",
            src.clone(),
            missing.clone(),
            "",
            vec!["target.data", "no-such"],
        ),
        (
            "init",
            missing.clone(),
            data.clone(),
            "",
            vec!["source.init", "no-such"],
        ),
    ];
    for (name, init, d, extra, needles) in cases {
        let cfg = study_file(t, &format!("{name}.toml"), &init, &d, 1, 1, extra);
        if name == "classes" {
            let text = std::fs::read_to_string(&cfg)
                .unwrap()
                .replace("\"2,3\"", "\"2,7\"");
            std::fs::write(&cfg, text).unwrap();
        }
        let dir = t.join(format!("study-{name}"));
        let t0 = Instant::now();
        let r = run(&["study", "--config", s(&cfg), "--dir", s(&dir)]);
        assert_refused(&r, &needles);
        assert!(!dir.exists(), "{name}: {} was created", dir.display());
        assert!(t0.elapsed() < Duration::from_secs(10));
    }
}

/// A study records the SHA-256 of its source checkpoint and data; rerun after the source was
/// replaced (or a data file changed) it refuses, naming what changed, instead of resuming
/// with trials from two sources; `--restart-from source` starts over on the new inputs and
/// ends. On main before the fingerprint the rerun resumed with exit 0.
#[test]
fn a_resumed_study_refuses_changed_inputs() {
    let (tmp, data, src) = setup();
    let t = tmp.path();
    let cfg = study_file(t, "s.toml", &src, &data, 2, 1, "");
    let dir = t.join("study");
    let study = |extra: &[&str]| {
        let mut a = vec!["study", "--config", s(&cfg), "--dir", s(&dir)];
        a.extend(extra);
        run(&a)
    };
    assert_success(&study(&["--max-trials", "1"]));
    // another source in the same file
    let other = t.join("other.safetensors");
    assert_success(&run(&[
        "pretrain",
        "--data",
        s(&data),
        "--arch",
        "mlp",
        "--hidden",
        "16,16",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--out",
        s(&other),
    ]));
    let original = std::fs::read(&src).unwrap();
    std::fs::copy(&other, &src).unwrap();
    assert_refused(
        &study(&[]),
        &[
            "source.init",
            "src.safetensors",
            "changed",
            "--restart-from source",
        ],
    );
    // put it back: the study resumes; change a data file: refused again
    std::fs::write(&src, &original).unwrap();
    assert_success(&study(&["--max-trials", "1"]));
    let labels = data.join("t10k-labels-idx1-ubyte");
    let mut l = std::fs::read(&labels).unwrap();
    let last = l.len() - 1;
    l[last] = (l[last] + 1) % 4;
    std::fs::write(&labels, &l).unwrap();
    assert_refused(&study(&[]), &["target.data", "changed"]);
    let r = study(&["--restart-from", "source"]);
    assert_success(&r);
    assert!(dir.join("report.html").is_file());
    assert_success(&study(&[]));
}

/// The source phase's own files are checked too: a study that pretrained its source refuses
/// to resume once `source.safetensors` in its folder was replaced.
#[test]
fn a_study_refuses_a_replaced_source_of_its_own() {
    let (tmp, data, src) = setup();
    let t = tmp.path();
    let cfg = t.join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "schemes = [\"l2-sp\"]\nseeds = 1\n[source.pretrain.model]\narch = \"mlp\"\nhidden = [16]\n\
             [source.pretrain.data]\ndata = {d:?}\nclasses = \"0,1\"\n[source.pretrain.train]\n\
             epochs = 1\n[target]\ndata = {d:?}\nclasses = \"2,3\"\nper_class = 6\n[train]\n\
             epochs = 1\nbatch_size = 4\n[search]\ntrials = 2\nhalving = false\n",
            d = s(&data)
        ),
    )
    .unwrap();
    let dir = t.join("study");
    let study = |extra: &[&str]| {
        let mut a = vec!["study", "--config", s(&cfg), "--dir", s(&dir)];
        a.extend(extra);
        run(&a)
    };
    assert_success(&study(&["--max-trials", "2"]));
    std::fs::copy(&src, dir.join("source.safetensors")).unwrap();
    assert_refused(&study(&[]), &["source.safetensors", "changed"]);
}

fn study_cmd(cfg: &Path, dir: &Path, jobs: &str) -> Command {
    let mut c = sptune();
    c.args(["--threads", "1", "study", "--config"])
        .arg(cfg)
        .arg("--dir")
        .arg(dir)
        .args(["--jobs", jobs])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Waits for `child` and returns its exit code and stderr.
fn finish(child: Child) -> (i32, String) {
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Two leaders started together on one folder: one runs the study, the other is refused at
/// once naming the first, and every planned trial ran once (done, none lost). On main before
/// the lock the second failed midway with "trial 2 is done, not running".
#[test]
fn a_second_leader_is_refused_at_once() {
    let (tmp, data, src) = setup();
    let t = tmp.path();
    let cfg = study_file(t, "s.toml", &src, &data, 3, 40, "");
    let dir = t.join("two-leaders");
    let a = study_cmd(&cfg, &dir, "1").spawn().unwrap();
    let b = study_cmd(&cfg, &dir, "1").spawn().unwrap();
    let (ra, rb) = (finish(a), finish(b));
    let (ok, refused) = if ra.0 == 0 { (ra, rb) } else { (rb, ra) };
    assert_eq!(
        ok.0, 0,
        "neither leader ran the study: {} / {}",
        ok.1, refused.1
    );
    assert_ne!(refused.0, 0, "both leaders exited 0");
    assert!(
        refused.1.contains("another leader (pid") && refused.1.contains("--helper"),
        "{}",
        refused.1
    );
    let list = run(&["--json", "runs", "list", s(&dir)]);
    assert_success(&list);
    let trials: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap();
    // 3 search trials, 1 final, 1 reference final at most (none when the target-only choice
    // is the chosen one)
    assert!(trials.len() >= 4, "{} trials", trials.len());
    for tr in &trials {
        assert_eq!(tr["status"], "done", "{tr}");
    }
    assert!(wait_gone(s(&dir), 5).is_empty());
}

/// `--jobs` above the cores is lowered with a note; killing the leader of `--jobs 2` with
/// SIGKILL or SIGTERM mid-study leaves no process of the study after a few seconds, and the
/// same command then resumes and ends with every trial done. On main before the
/// parent-death signal and the lock poll, the helper kept running after its leader died.
#[test]
fn helpers_die_with_their_leader() {
    let (tmp, data, src) = setup();
    let t = tmp.path();
    let cfg = study_file(t, "s.toml", &src, &data, 6, 400, "");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for signal in [libc::SIGKILL, libc::SIGTERM] {
        let dir = t.join(format!("killed-{signal}"));
        let leader = study_cmd(&cfg, &dir, "1000").spawn().unwrap();
        let pid = leader.id();
        // wait until a helper runs (a process with --helper on this folder), then kill the leader
        let t0 = Instant::now();
        while cores > 1
            && !processes_mentioning(s(&dir))
                .iter()
                .any(|(_, l)| l.contains("--helper"))
        {
            assert!(t0.elapsed() < Duration::from_secs(60), "no helper started");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        unsafe { libc::kill(pid as i32, signal) };
        let (_, stderr) = finish(leader);
        assert!(
            stderr.contains(&format!("--jobs 1000 lowered to {cores}")),
            "{stderr}"
        );
        let left = wait_gone(s(&dir), 5);
        assert!(
            left.is_empty(),
            "left running after signal {signal}: {left:?}"
        );
        // resumed by the same command (one process): every trial done once
        let r = run(&[
            "--threads",
            "1",
            "study",
            "--config",
            s(&cfg),
            "--dir",
            s(&dir),
        ]);
        assert_success(&r);
        let list = run(&["--json", "runs", "list", s(&dir)]);
        let trials: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap();
        assert!(
            trials.iter().all(|tr| tr["status"] == "done"),
            "{}",
            list.stdout
        );
    }
    let peak = children_peak_rss();
    assert!(peak < 1 << 30, "a process peaked at {} MiB", peak >> 20);
}

/// A source that fails to pretrain (here it diverges at lr 1e9) stops the study with one line
/// naming the source trial, and the Fisher step that would need it is never planned. Before,
/// the Fisher step ran on the missing source and failed too.
#[test]
fn a_failed_source_stops_the_study_before_its_fisher() {
    let (tmp, data, _) = setup();
    let t = tmp.path();
    let cfg = t.join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "schemes = [\"l2-sp-fisher\"]\nseeds = 1\n[source.pretrain.model]\narch = \"mlp\"\n\
             hidden = [16]\n[source.pretrain.data]\ndata = {d:?}\nclasses = \"0,1\"\n\
             [source.pretrain.train]\nepochs = 2\nlr = 1e9\n[target]\ndata = {d:?}\n\
             classes = \"2,3\"\nper_class = 6\n[train]\nepochs = 1\n[search]\ntrials = 1\n",
            d = s(&data)
        ),
    )
    .unwrap();
    let dir = t.join("study");
    let r = run(&["study", "--config", s(&cfg), "--dir", s(&dir)]);
    assert_refused(&r, &["the source phase failed", "source/pretrain"]);
    let list = run(&["--json", "runs", "list", s(&dir)]);
    assert_success(&list);
    let trials: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap();
    let keys: Vec<&str> = trials.iter().map(|t| t["key"].as_str().unwrap()).collect();
    assert_eq!(keys, vec!["source/pretrain"], "{}", list.stdout);
}
