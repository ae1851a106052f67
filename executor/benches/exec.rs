//! Executor benchmarks (run with `scripts/bench-exec`): capturing a layer from an upper
//! directory of 20,000 small files (200 MB) against `tar` over the same directory, and the
//! start-to-exit time of a sandbox running `true`. This binary is also its own sandbox helper.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rbuild_executor::diff::overlay::diff_upper;
use rbuild_executor::lower::LowerView;
use rbuild_executor::{
    Backend, Executor, ExecutorOptions, LayerOptions, RunStep, Stdio3, write_layer,
};

fn main() {
    rbuild_executor::sandbox::maybe_run_helper();
    let args: Vec<String> = std::env::args().collect();
    // cargo bench passes `--bench`; anything else selects a benchmark by name.
    let only: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with("--")).collect();
    let want = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    let dir = std::env::var_os("RBUILD_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("rbuild-bench-")
        .tempdir_in(dir)
        .unwrap();
    if want("capture") {
        capture(tmp.path());
    }
    if want("sandbox") {
        sandbox_start(tmp.path());
    }
}

fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let r = f();
    (t.elapsed(), r)
}

fn capture(tmp: &Path) {
    let upper = tmp.join("upper");
    let lower = tmp.join("lower");
    std::fs::create_dir_all(&lower).unwrap();
    std::fs::write(lower.join("base-file"), "base").unwrap();
    let files = 20_000;
    let size = 10 * 1024;
    let mut buf = vec![0u8; size];
    for d in 0..200 {
        let dir = upper.join(format!("app/d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..files / 200 {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = ((i * 31 + f * 7 + d) % 251) as u8;
            }
            std::fs::write(dir.join(format!("f{f:03}.bin")), &buf).unwrap();
        }
    }
    // Page caches stay warm for both sides, like an upper directory a step just wrote.
    Command::new("sync").status().unwrap();
    let view = LowerView::new(&[lower]);
    let blob = tmp.join("blob");
    let runs = 3;
    let mut ours = Vec::new();
    let mut ours_null = Vec::new();
    let mut ours_store = Vec::new();
    let store = rbuild_store::Store::open(tmp.join("store")).unwrap();
    let mut diff_only = Vec::new();
    let mut tar_null = Vec::new();
    let mut tar_read = Vec::new();
    let mut tar_file = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let (d, info) = time(|| {
            let cs = diff_upper(&upper, &view).unwrap();
            let out = std::fs::File::create(&blob).unwrap();
            write_layer(&cs, out, &LayerOptions::default()).unwrap()
        });
        ours.push(d);
        last = Some(info);
        let (d, _) = time(|| {
            let cs = diff_upper(&upper, &view).unwrap();
            let out = std::fs::File::create("/dev/null").unwrap();
            write_layer(&cs, out, &LayerOptions::default()).unwrap()
        });
        ours_null.push(d);
        let (d, _) = time(|| diff_upper(&upper, &view).unwrap());
        diff_only.push(d);
        let (d, _) = time(|| {
            let cs = diff_upper(&upper, &view).unwrap();
            let mut w = store.blob_writer().unwrap();
            rbuild_executor::layer::write_tar(&cs, &mut w, &LayerOptions::default()).unwrap();
            w.commit().unwrap()
        });
        ours_store.push(d);
        let (d, _) = time(|| sh(&format!("tar -C {} -cf - . > /dev/null", upper.display())));
        tar_null.push(d);
        let (d, _) = time(|| {
            sh(&format!(
                "tar -C {} -cf - . | cat > /dev/null",
                upper.display()
            ))
        });
        tar_read.push(d);
        let (d, _) = time(|| {
            sh(&format!(
                "tar -C {} -cf {} .",
                upper.display(),
                tmp.join("t.tar").display()
            ))
        });
        tar_file.push(d);
    }
    let info = last.unwrap();
    let m = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (o, tn, tr, tf) = (
        m(&mut ours),
        m(&mut tar_null),
        m(&mut tar_read),
        m(&mut tar_file),
    );
    let (on, od, os) = (m(&mut ours_null), m(&mut diff_only), m(&mut ours_store));
    println!(
        "capture: 20000 files, {} MB layer, diff_id {}",
        info.size / 1_000_000,
        &info.diff_id[..19]
    );
    println!("  rbuild diff + layer into a blob file : {:>7.1} ms", ms(o));
    println!(
        "  rbuild diff + layer to /dev/null     : {:>7.1} ms   (diff alone {:.1} ms)",
        ms(on),
        ms(od)
    );
    println!(
        "  rbuild capture into the store (blob fsynced, renamed): {:>7.1} ms",
        ms(os)
    );
    println!(
        "  tar -cf - . > /dev/null              : {:>7.1} ms   ratio {:.2}x (GNU tar skips file data when writing to /dev/null)",
        ms(tn),
        ratio(o, tn)
    );
    println!(
        "  tar -cf - . | cat > /dev/null        : {:>7.1} ms   ratio {:.2}x",
        ms(tr),
        ratio(o, tr)
    );
    println!(
        "  tar -cf FILE .                       : {:>7.1} ms   ratio {:.2}x",
        ms(tf),
        ratio(o, tf)
    );
}

fn sandbox_start(tmp: &Path) {
    let root = tmp.join("root");
    std::fs::create_dir_all(&root).unwrap();
    for (name, backend) in [("overlay", Backend::Overlay), ("copy", Backend::Copy)] {
        let exec = Executor::new(
            &root,
            ExecutorOptions {
                helper: None,
                backend,
                legacy_overlay: false,
            },
        )
        .unwrap();
        let base = exec
            .snapshots()
            .ensure(&format!("sha256:{}", "a".repeat(64)), |d| {
                for sub in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
                    std::fs::create_dir_all(d.join(sub)).unwrap();
                }
                std::fs::copy("/bin/busybox", d.join("bin/busybox")).unwrap();
                for a in ["sh", "true"] {
                    std::os::unix::fs::symlink("/bin/busybox", d.join("bin").join(a)).unwrap();
                }
                Ok(())
            })
            .unwrap();
        let mut times = Vec::new();
        let runs: usize = std::env::var("RBUILD_BENCH_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30);
        for _ in 0..runs {
            let mut cb = |_: rbuild_executor::Stream, _: &[u8]| {};
            let step = RunStep::new(
                vec![base.clone()],
                vec!["/bin/true".into()],
                Stdio3::Capture(&mut cb),
            );
            let (d, outcome) = time(|| exec.run(step).unwrap());
            assert!(outcome.status.success());
            let (d2, _) = time(|| drop(outcome));
            times.push(d + d2);
        }
        times.sort();
        println!(
            "sandbox start to exit, RUN true ({name}): median {:.1} ms, p90 {:.1} ms, min {:.1} ms ({runs} runs)",
            ms(times[runs / 2]),
            ms(times[runs * 9 / 10]),
            ms(times[0])
        );
    }
}

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(st.success(), "{cmd}");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
