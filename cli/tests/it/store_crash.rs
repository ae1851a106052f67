//! Crash and concurrency safety of the store: `kill -9` at random moments during `load` never
//! leaves a reference to a missing or corrupt blob (fsck --full passes after every kill), and
//! two concurrent loads racing a prune lose nothing.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::store::*;
use crate::support::{TestEnv, load_busybox, text};

fn write_archive(dir: &std::path::Path, name: &str, parts: &Parts) -> std::path::PathBuf {
    let p = dir.join(format!("{}.tar", name.replace([':', '/'], "_")));
    std::fs::write(&p, parts.build()).unwrap();
    p
}

/// The rbuild binary as a plain `std::process::Command` (assert_cmd's cannot spawn).
fn rbuild() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_rbuild"));
    c.env_remove("RBUILD_ROOT").env("NO_COLOR", "1");
    c
}

/// A tiny xorshift PRNG seeded from the clock: random delays without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// kill -9 during load, 20 times at random delays: the store stays consistent after each kill,
/// and a final load completes.
#[test]
fn kill_9_during_load_keeps_the_store_consistent() {
    let work = tempfile::tempdir().unwrap();
    let layers: Vec<Vec<u8>> = (0..4).map(|i| bulky_layer(i, 6, 1 << 20)).collect();
    let archive = write_archive(
        work.path(),
        "crash",
        &Parts::new("docker.io/library/crash:1", layers),
    );

    // How long does an uninterrupted load take?
    let probe = TestEnv::new();
    let start = Instant::now();
    probe
        .rbuild()
        .args(["load", "-i"])
        .arg(&archive)
        .assert()
        .success();
    let full = start.elapsed().max(Duration::from_millis(20));

    let env = TestEnv::new();
    load_busybox(&env);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = Rng(seed | 1);
    let mut killed_mid_way = 0;
    for i in 0..20 {
        let delay = Duration::from_micros(rng.next() % (full.as_micros() as u64 + 1));
        let mut child = rbuild()
            .arg("--root")
            .arg(env.root())
            .args(["load", "-i"])
            .arg(&archive)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed_mid_way += 1;
        }
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();
        let out = env
            .rbuild()
            .args(["store", "fsck", "--full"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "iteration {i} (delay {delay:?}, seed {seed}): {:?}",
            text(&out)
        );
        // The image loaded before is untouched.
        env.rbuild()
            .args(["inspect", "busybox:1.35"])
            .assert()
            .success();
    }
    assert!(
        killed_mid_way > 0,
        "no kill landed during a load (full load took {full:?})"
    );
    env.rbuild()
        .args(["load", "-i"])
        .arg(&archive)
        .assert()
        .success();
    env.rbuild().args(["inspect", "crash:1"]).assert().success();
    // Leftovers of the killed loads are garbage that prune clears.
    env.rbuild().args(["prune", "-f"]).assert().success();
    let out = env.rbuild().args(["store", "fsck"]).output().unwrap();
    assert!(!text(&out).0.contains("garbage:"), "{}", text(&out).0);
    assert_eq!(
        std::fs::read_dir(env.root().join("ingest"))
            .unwrap()
            .count(),
        0
    );
}

/// Two loads sharing a layer run while prune runs in a loop: both images end up complete.
#[test]
fn concurrent_loads_and_prune_lose_nothing() {
    let work = tempfile::tempdir().unwrap();
    let shared = bulky_layer(100, 4, 1 << 20);
    let a = write_archive(
        work.path(),
        "a",
        &Parts::new(
            "docker.io/library/a:1",
            vec![shared.clone(), bulky_layer(101, 4, 1 << 20)],
        ),
    );
    let b = write_archive(
        work.path(),
        "b",
        &Parts::new(
            "docker.io/library/b:1",
            vec![shared, bulky_layer(102, 4, 1 << 20)],
        ),
    );
    for round in 0..3 {
        let env = TestEnv::new();
        let spawn = |args: &[&str], archive: Option<&std::path::Path>| {
            let mut c = rbuild();
            c.arg("--root").arg(env.root()).args(args);
            if let Some(p) = archive {
                c.arg(p);
            }
            c.stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let la = spawn(&["load", "-i"], Some(&a));
        let lb = spawn(&["load", "-i"], Some(&b));
        let mut prunes = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut la, mut lb) = (la, lb);
        loop {
            let out = spawn(&["prune", "-f"], None).wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "prune failed in round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            prunes += 1;
            if la.try_wait().unwrap().is_some() && lb.try_wait().unwrap().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "loads did not finish");
        }
        assert!(
            la.wait().unwrap().success(),
            "load a failed in round {round}"
        );
        assert!(
            lb.wait().unwrap().success(),
            "load b failed in round {round}"
        );
        spawn(&["prune", "-f"], None).wait().unwrap();
        for name in ["a:1", "b:1"] {
            env.rbuild().args(["inspect", name]).assert().success();
        }
        assert_fsck_ok(&env);
        assert!(prunes >= 1);
    }
}
