//! RUN mounts and the sandbox's own mounts: cache, secret, tmpfs and bind mounts work as
//! BuildKit's do, and neither their contents nor the mount points they needed reach the layer;
//! `/etc/hosts` and `/etc/resolv.conf` come from the host but are never captured.

use crate::support;
use std::path::{Path, PathBuf};

use crate::support::exec::{Fixture, run_sh};
use rbuild_executor::diff::normalized;
use rbuild_executor::mounts::{
    BindMount, BindSource, CacheMount, RunMount, SecretMount, SecretValue, Sharing, TmpfsMount,
    cache_dir,
};
use rbuild_executor::{Backend, ExecError};

const BACKENDS: [Backend; 2] = [Backend::Overlay, Backend::Copy];

fn changes(ran: &support::exec::Ran) -> Vec<String> {
    normalized(&ran.outcome().rootfs.changeset().unwrap()).unwrap()
}

/// A cache mount keeps its files across steps, under the store root, and never in a layer.
#[test]
fn cache_mounts_persist_between_steps_and_stay_out_of_the_layer() {
    for backend in BACKENDS {
        let fx = Fixture::new(backend);
        let cache = || vec![RunMount::Cache(CacheMount::new("/root/.cache/tool"))];
        let first = run_sh(
            &fx.exec,
            &fx.lowers(),
            "echo kept > /root/.cache/tool/f",
            |s| s.mounts = cache(),
        );
        assert!(first.outcome().status.success(), "{:?}", first.stderr);
        assert_eq!(changes(&first), Vec::<String>::new(), "{backend:?}");
        let second = run_sh(&fx.exec, &fx.lowers(), "cat /root/.cache/tool/f", |s| {
            s.mounts = cache()
        });
        assert_eq!(second.stdout, ["kept"]);
        let dir = cache_dir(&fx.root, "/root/.cache/tool").join("data");
        assert_eq!(std::fs::read_to_string(dir.join("f")).unwrap(), "kept\n");
    }
}

/// `sharing=locked` makes concurrent steps take turns.
#[test]
fn locked_cache_mounts_take_turns() {
    let fx = Fixture::new(Backend::Overlay);
    let mount = || {
        let mut c = CacheMount::new("/c");
        c.sharing = Sharing::Locked;
        vec![RunMount::Cache(c)]
    };
    std::thread::scope(|s| {
        for name in ["a", "b"] {
            let fx = &fx;
            s.spawn(move || {
                let ran = run_sh(
                    &fx.exec,
                    &fx.lowers(),
                    &format!("echo start-{name} >> /c/log; sleep 0.3; echo end-{name} >> /c/log"),
                    |st| st.mounts = mount(),
                );
                assert!(ran.outcome().status.success());
            });
        }
    });
    let log = std::fs::read_to_string(cache_dir(&fx.root, "/c").join("data/log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[0].replace("start-", ""),
        lines[1].replace("end-", ""),
        "{log}"
    );
    assert_eq!(
        lines[2].replace("start-", ""),
        lines[3].replace("end-", ""),
        "{log}"
    );
}

/// `sharing=private` works on a throwaway copy while another user holds the cache.
#[test]
fn private_cache_mounts_get_a_copy_when_the_cache_is_busy() {
    let fx = Fixture::new(Backend::Overlay);
    let private = || {
        let mut c = CacheMount::new("/p");
        c.sharing = Sharing::Private;
        vec![RunMount::Cache(c)]
    };
    let ran = run_sh(&fx.exec, &fx.lowers(), "echo base > /p/seed", |s| {
        s.mounts = private()
    });
    assert!(ran.outcome().status.success());
    let dir = cache_dir(&fx.root, "/p");
    let holder = std::fs::File::open(dir.join("lock")).unwrap();
    holder.lock().unwrap();
    let ran = run_sh(
        &fx.exec,
        &fx.lowers(),
        "cat /p/seed; echo mine > /p/new",
        |s| s.mounts = private(),
    );
    assert_eq!(ran.stdout, ["base"]);
    assert!(
        !dir.join("data/new").exists(),
        "the busy cache was not written"
    );
    holder.unlock().unwrap();
}

/// Secrets are readable (file with mode 0400, or an environment variable), never stored in a
/// layer, and never written to disk under the store.
#[test]
fn secrets_are_readable_but_never_stored() {
    for backend in BACKENDS {
        let fx = Fixture::new(backend);
        let src = fx.tmp.path().join("token.txt");
        std::fs::write(&src, "s3cret-value").unwrap();
        let mut env_secret =
            SecretMount::new("envtok", Some(SecretValue::Bytes(b"env-value".to_vec())));
        env_secret.env = Some("TOKEN".into());
        let ran = run_sh(
            &fx.exec,
            &fx.lowers(),
            "cat /run/secrets/tok; echo; stat -c '%a %u' /run/secrets/tok; echo $TOKEN; \
             echo x > /run/secrets/tok 2>/dev/null || echo read-only",
            |s| {
                s.mounts = vec![
                    RunMount::Secret(SecretMount::new(
                        "tok",
                        Some(SecretValue::File(src.clone())),
                    )),
                    RunMount::Secret(env_secret),
                ]
            },
        );
        assert_eq!(
            ran.stdout,
            ["s3cret-value", "400 0", "env-value", "read-only"],
            "{backend:?} {:?}",
            ran.stderr
        );
        assert_eq!(
            changes(&ran),
            Vec::<String>::new(),
            "{backend:?}: /run stays out"
        );
        for p in support::exec::walk(&fx.root) {
            if std::fs::symlink_metadata(&p).unwrap().is_file() {
                let data = std::fs::read(&p).unwrap();
                assert!(
                    !data.windows(12).any(|w| w == b"s3cret-value"),
                    "the secret reached the disk in {}",
                    p.display()
                );
            }
        }
    }
}

/// A required secret that was not provided stops the step before it runs.
#[test]
fn a_missing_required_secret_is_an_error() {
    let fx = Fixture::new(Backend::Overlay);
    let ran = run_sh(&fx.exec, &fx.lowers(), "true", |s| {
        let mut m = SecretMount::new("npmrc", None);
        m.required = true;
        s.mounts = vec![RunMount::Secret(m)];
    });
    match &ran.result {
        Err(e @ ExecError::Mount { .. }) => {
            assert!(e.to_string().contains("secret `npmrc` is required"), "{e}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("the step should not run"),
    }
}

/// A tmpfs mount holds data for the step only, honours its size, and leaves no trace.
#[test]
fn tmpfs_mounts_are_sized_and_leave_no_trace() {
    for backend in BACKENDS {
        let fx = Fixture::new(backend);
        let ran = run_sh(
            &fx.exec,
            &fx.lowers(),
            "dd if=/dev/zero of=/scratch/a bs=1k count=100 2>/dev/null && echo small-ok; \
             dd if=/dev/zero of=/scratch/b bs=1k count=2048 2>/dev/null || echo too-big",
            |s| {
                s.mounts = vec![RunMount::Tmpfs(TmpfsMount {
                    target: "/scratch".into(),
                    size: Some(1 << 20),
                })]
            },
        );
        assert_eq!(ran.stdout, ["small-ok", "too-big"], "{backend:?}");
        assert_eq!(changes(&ran), Vec::<String>::new(), "{backend:?}");
    }
}

/// A bind mount of `sub` inside the host directory `root`, without the `hidden` paths.
fn dir_bind(root: &Path, sub: &str, target: &str, rw: bool, hidden: &[&str]) -> RunMount {
    RunMount::Bind(BindMount {
        target: target.into(),
        source: BindSource::Dir {
            root: root.to_path_buf(),
            subpath: sub.into(),
            hidden: hidden.iter().map(PathBuf::from).collect(),
        },
        readwrite: rw,
    })
}

/// Bind mounts are read-only by default; with `rw`, writes succeed but are discarded; the
/// source on the host is never modified.
#[test]
fn bind_mounts_are_read_only_and_writable_ones_discard_writes() {
    let fx = Fixture::new(Backend::Overlay);
    let ctx = fx.tmp.path().join("context");
    std::fs::create_dir_all(ctx.join("src")).unwrap();
    std::fs::write(ctx.join("src/main.c"), "int main;").unwrap();
    std::fs::write(ctx.join("single"), "one file").unwrap();
    let bind = |sub: &str, target: &str, rw: bool| dir_bind(&ctx, sub, target, rw, &[]);
    let ran = run_sh(
        &fx.exec,
        &fx.lowers(),
        "cat /ctx/src/main.c; echo; cat /one; echo; touch /ctx/new 2>/dev/null || echo ro; \
         echo changed > /rw/main.c && cat /rw/main.c; echo w > /rwfile && cat /rwfile",
        |s| {
            s.mounts = vec![
                bind("/", "/ctx", false),
                bind("single", "/one", false),
                bind("src", "/rw", true),
                bind("single", "/rwfile", true),
            ]
        },
    );
    assert_eq!(
        ran.stdout,
        ["int main;", "one file", "ro", "changed", "w"],
        "{:?}",
        ran.stderr
    );
    assert_eq!(changes(&ran), Vec::<String>::new());
    assert_eq!(
        std::fs::read_to_string(ctx.join("src/main.c")).unwrap(),
        "int main;"
    );
    assert_eq!(
        std::fs::read_to_string(ctx.join("single")).unwrap(),
        "one file"
    );
    assert!(!ctx.join("new").exists());
}

/// Hidden paths (what `.dockerignore` excludes) are absent from a bind mount, read-only or
/// writable, whole or a subdirectory; the host directory is untouched.
#[test]
fn bind_mounts_hide_excluded_paths() {
    let fx = Fixture::new(Backend::Overlay);
    let ctx = fx.tmp.path().join("context");
    std::fs::create_dir_all(ctx.join("src/gen")).unwrap();
    std::fs::write(ctx.join("src/main.c"), "int main;").unwrap();
    std::fs::write(ctx.join("src/gen/big.o"), "obj").unwrap();
    std::fs::write(ctx.join("secret.env"), "TOKEN=1").unwrap();
    let hidden = ["secret.env", "src/gen"];
    let bind = |sub: &str, target: &str, rw: bool| dir_bind(&ctx, sub, target, rw, &hidden);
    let ran = run_sh(
        &fx.exec,
        &fx.lowers(),
        "cd /ctx && find . | sort | tr '\\n' ' '; echo; cd /src && find . | sort | tr '\\n' ' '; \
         echo; cat /ctx/secret.env 2>/dev/null || echo hidden; \
         rm /src/main.c && echo more > /src/x && ls /src",
        |s| s.mounts = vec![bind("/", "/ctx", false), bind("src", "/src", true)],
    );
    assert_eq!(
        ran.stdout,
        [". ./src ./src/main.c ", ". ./main.c ", "hidden", "x"],
        "{:?}",
        ran.stderr
    );
    assert_eq!(changes(&ran), Vec::<String>::new());
    assert!(ctx.join("src/main.c").exists() && ctx.join("secret.env").exists());
    assert!(!ctx.join("src/x").exists());
}

/// A bind source is resolved inside its root: a symlink pointing out of the context cannot
/// reach the host.
#[test]
fn bind_sources_cannot_escape_their_root() {
    let fx = Fixture::new(Backend::Overlay);
    let ctx = fx.tmp.path().join("context");
    std::fs::create_dir_all(&ctx).unwrap();
    std::os::unix::fs::symlink("/../../../etc", ctx.join("esc")).unwrap();
    let ran = run_sh(&fx.exec, &fx.lowers(), "cat /x/hostname", |s| {
        s.mounts = vec![RunMount::Bind(BindMount {
            target: "/x".into(),
            source: BindSource::Dir {
                root: ctx.clone(),
                subpath: "esc".into(),
                hidden: Vec::new(),
            },
            readwrite: false,
        })]
    });
    match &ran.result {
        Err(e @ ExecError::Mount { .. }) => assert!(e.to_string().contains("`esc`"), "{e}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(o) => panic!("the escape was mounted: {} {:?}", o.status, ran.stdout),
    }
}

/// Mount targets that do not exist in the image get stubs that never reach the layer, even
/// when the step replaces their parents with symlinks to host paths (CVE-2024-23652): nothing
/// is cleaned up afterwards, so nothing can be redirected.
#[test]
fn mount_stubs_never_reach_the_layer_or_the_host() {
    for backend in BACKENDS {
        let fx = Fixture::new(backend);
        let canary = fx.tmp.path().join("canary");
        std::fs::create_dir(&canary).unwrap();
        std::fs::write(canary.join("keep"), "k").unwrap();
        let tmpfs = || {
            vec![RunMount::Tmpfs(TmpfsMount {
                target: "/a/b/c".into(),
                size: None,
            })]
        };
        let ran = run_sh(
            &fx.exec,
            &fx.lowers(),
            "echo x > /a/b/c/f && ls /a/b/c",
            |s| s.mounts = tmpfs(),
        );
        assert_eq!(ran.stdout, ["f"]);
        assert_eq!(changes(&ran), Vec::<String>::new(), "{backend:?}");
        let script = format!(
            "rm -rf /a 2>/dev/null; mv /a /gone 2>/dev/null; ln -s {} /a 2>/dev/null; true",
            canary.display()
        );
        let ran = run_sh(&fx.exec, &fx.lowers(), &script, |s| s.mounts = tmpfs());
        assert!(ran.outcome().status.success());
        drop(ran);
        assert_eq!(std::fs::read_to_string(canary.join("keep")).unwrap(), "k");
        assert_eq!(std::fs::read_dir(&canary).unwrap().count(), 1);
    }
}

/// `/etc/hosts` and `/etc/resolv.conf` come from the host (hosts also names the sandbox), may
/// be written by the step, and are never captured — also when the image lacks them or has a
/// symlink there.
#[test]
fn hosts_and_resolv_conf_are_provided_but_never_captured() {
    let host_resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    for backend in BACKENDS {
        let fx = Fixture::new(backend);
        let linked = fx.layer(900, |d| {
            std::fs::create_dir(d.join("etc")).unwrap();
            std::os::unix::fs::symlink("../run/resolv.conf", d.join("etc/resolv.conf")).unwrap();
            support::exec::set_times(d, 1000);
        });
        for lowers in [fx.lowers(), vec![fx.base.clone(), linked]] {
            let ran = run_sh(
                &fx.exec,
                &lowers,
                "grep -c sandbox-host /etc/hosts; echo nameserver 192.0.2.1 >> /etc/resolv.conf && echo wrote",
                |s| s.hostname = "sandbox-host".into(),
            );
            assert_eq!(ran.stdout, ["1", "wrote"], "{backend:?} {:?}", ran.stderr);
            assert_eq!(changes(&ran), Vec::<String>::new(), "{backend:?}");
        }
    }
    assert_eq!(
        std::fs::read("/etc/resolv.conf").unwrap_or_default(),
        host_resolv
    );
}

/// A shared cache is used by concurrent steps at the same time: each waits to see the other
/// inside, which only works if they overlap.
#[test]
fn shared_cache_mounts_are_used_concurrently() {
    let fx = Fixture::new(Backend::Overlay);
    std::thread::scope(|s| {
        for (me, other) in [("a", "b"), ("b", "a")] {
            let fx = &fx;
            s.spawn(move || {
                let script = format!(
                    "touch /shared/{me}; for i in $(seq 200); do [ -e /shared/{other} ] && exit 0; sleep 0.05; done; exit 1"
                );
                let ran = run_sh(&fx.exec, &fx.lowers(), &script, |st| {
                    st.mounts = vec![RunMount::Cache(CacheMount::new("/shared"))]
                });
                assert!(ran.outcome().status.success(), "{me} never saw {other}");
            });
        }
    });
}

/// A mount target behind an absolute symlink in the image is resolved inside the rootfs, never
/// on the host.
#[test]
fn mount_targets_behind_image_symlinks_stay_inside_the_rootfs() {
    let fx = Fixture::new(Backend::Overlay);
    let host_dir = fx.tmp.path().join("host-side");
    std::fs::create_dir(&host_dir).unwrap();
    let linked = fx.layer(901, |d| {
        std::os::unix::fs::symlink(&host_dir, d.join("mnt")).unwrap();
    });
    let ran = run_sh(
        &fx.exec,
        &[fx.base.clone(), linked],
        "echo inside > /mnt/x/file && cat /mnt/x/file",
        |s| {
            s.mounts = vec![RunMount::Tmpfs(TmpfsMount {
                target: "/mnt/x".into(),
                size: None,
            })]
        },
    );
    assert_eq!(ran.stdout, ["inside"], "{:?}", ran.stderr);
    assert_eq!(
        std::fs::read_dir(&host_dir).unwrap().count(),
        0,
        "nothing on the host"
    );
    assert_eq!(changes(&ran), Vec::<String>::new());
}

/// A cache mount of `source=` (`subpath`) shows that directory of the cache, made on demand
/// with the mount's owner and mode; a later step mounting the whole cache sees its files under
/// it, and the cache's key (its directory) is the same.
#[test]
fn cache_subpaths_mount_a_directory_of_the_cache_made_on_demand() {
    let fx = Fixture::new(Backend::Overlay);
    let mut sub = CacheMount::new("/c");
    sub.id = "shared".into();
    sub.subpath = "/sub/deeper".into();
    sub.uid = 1000;
    sub.mode = 0o750;
    let ran = run_sh(
        &fx.exec,
        &fx.lowers(),
        "echo in-sub > /c/f; stat -c '%u %a' /c; ls /c",
        |s| s.mounts = vec![RunMount::Cache(sub.clone())],
    );
    assert!(ran.outcome().status.success(), "{:?}", ran.stderr);
    assert_eq!(ran.stdout, ["1000 750", "f"]);
    let mut whole = CacheMount::new("/whole");
    whole.id = "shared".into();
    let ran = run_sh(&fx.exec, &fx.lowers(), "cat /whole/sub/deeper/f", |s| {
        s.mounts = vec![RunMount::Cache(whole.clone())]
    });
    assert_eq!(ran.stdout, ["in-sub"], "{:?}", ran.stderr);
    let data = cache_dir(&fx.root, "shared").join("data");
    assert_eq!(
        std::fs::read_to_string(data.join("sub/deeper/f")).unwrap(),
        "in-sub\n"
    );
    // A file where a directory is wanted is an error naming the source, not a file mount.
    std::fs::write(data.join("plain"), "x").unwrap();
    let mut file = whole.clone();
    file.subpath = "/plain".into();
    let ran = run_sh(&fx.exec, &fx.lowers(), "true", |s| {
        s.mounts = vec![RunMount::Cache(file)]
    });
    match &ran.result {
        Err(e @ ExecError::Mount { .. }) => {
            assert!(e.to_string().contains("plain"), "{e}")
        }
        other => panic!("expected a mount error, got {:?}", other.as_ref().err()),
    }
}

/// Whatever a step plants in a shared cache (symlinks to `/` or to host directories, `..`
/// chains), a `source=` subpath resolves inside the cache: host canaries are never shown or
/// written, and `../../etc` is the cache's own `etc`.
#[test]
fn cache_subpaths_never_leave_the_cache() {
    let fx = Fixture::new(Backend::Overlay);
    let canary = fx.tmp.path().join("canary");
    std::fs::create_dir(&canary).unwrap();
    std::fs::write(canary.join("keep"), "k").unwrap();
    let mount = |subpath: &str| {
        let mut c = CacheMount::new("/c");
        c.id = "planted".into();
        c.subpath = subpath.into();
        vec![RunMount::Cache(c)]
    };
    let plant = format!(
        "echo cache > /c/marker; ln -s / /c/root; ln -s {} /c/host; ln -s ../../../../../.. /c/up",
        canary.display()
    );
    let ran = run_sh(&fx.exec, &fx.lowers(), &plant, |s| s.mounts = mount("/"));
    assert!(ran.outcome().status.success(), "{:?}", ran.stderr);

    // `root` -> `/` is the cache's root; `up/..` too.
    for subpath in ["/root", "/up", "/up/../root"] {
        let ran = run_sh(
            &fx.exec,
            &fx.lowers(),
            "cat /c/marker; ls /c | wc -l",
            |s| s.mounts = mount(subpath),
        );
        assert_eq!(ran.stdout, ["cache", "4"], "{subpath}: {:?}", ran.stderr);
    }
    // `host` -> the canary's host path: resolved inside the cache, where it does not exist
    // (and is not made through a symlink): the mount is refused, the canary untouched.
    let ran = run_sh(&fx.exec, &fx.lowers(), "echo pwned > /c/pwned", |s| {
        s.mounts = mount("/host")
    });
    assert!(
        matches!(&ran.result, Err(ExecError::Mount { message, .. }) if message.contains("`host`")),
        "{:?}",
        ran.result.as_ref().err()
    );
    // Once that path exists inside the cache, the symlink leads there.
    let inside = cache_dir(&fx.root, "planted")
        .join("data")
        .join(canary.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&inside).unwrap();
    let ran = run_sh(
        &fx.exec,
        &fx.lowers(),
        "ls /c | wc -l; echo pwned > /c/pwned",
        |s| s.mounts = mount("/host"),
    );
    assert_eq!(ran.stdout, ["0"], "{:?}", ran.stderr);
    // `../../etc` stays in the cache: an empty directory, not the host's /etc.
    let ran = run_sh(
        &fx.exec,
        &fx.lowers(),
        "[ -e /c/passwd ] && echo host-etc || echo cache-etc",
        |s| s.mounts = mount("../../etc"),
    );
    assert_eq!(ran.stdout, ["cache-etc"], "{:?}", ran.stderr);
    let data = cache_dir(&fx.root, "planted").join("data");
    assert!(data.join("etc").is_dir());
    assert_eq!(
        std::fs::read_to_string(inside.join("pwned")).unwrap(),
        "pwned\n"
    );
    assert_eq!(std::fs::read_dir(&canary).unwrap().count(), 1);
    assert_eq!(std::fs::read_to_string(canary.join("keep")).unwrap(), "k");
}

/// CVE-2024-23651: one step keeps swapping a cache directory for a symlink to a host
/// directory while parallel steps mount it with `source=`; none of them ever writes to the
/// host (each either mounts a directory of the cache or fails to set up).
#[test]
fn a_step_racing_symlinks_into_a_shared_cache_cannot_redirect_a_subpath_mount() {
    let fx = Fixture::new(Backend::Overlay);
    let canary = fx.tmp.path().join("canary");
    std::fs::create_dir(&canary).unwrap();
    std::fs::write(canary.join("keep"), "k").unwrap();
    let mount = |subpath: &str| {
        let mut c = CacheMount::new("/c");
        c.id = "raced".into();
        c.subpath = subpath.into();
        vec![RunMount::Cache(c)]
    };
    let swapper = format!(
        "i=0; while [ $i -lt 1500 ]; do rm -rf /c/sub; ln -s {} /c/sub; rm -f /c/sub; \
         mkdir /c/sub; i=$((i+1)); done",
        canary.display()
    );
    let (mut mounted, mut refused) = (0, 0);
    std::thread::scope(|s| {
        let fx = &fx;
        let swapping = s.spawn(move || {
            let ran = run_sh(&fx.exec, &fx.lowers(), &swapper, |st| {
                st.mounts = mount("/")
            });
            assert!(ran.outcome().status.success(), "{:?}", ran.stderr);
        });
        while !swapping.is_finished() {
            let ran = run_sh(&fx.exec, &fx.lowers(), "echo x > /c/written", |st| {
                st.mounts = mount("/sub")
            });
            match ran.result {
                Ok(_) => mounted += 1,
                Err(_) => refused += 1,
            }
        }
    });
    assert!(mounted + refused > 0);
    eprintln!("{mounted} steps mounted the subpath, {refused} were refused");
    assert_eq!(std::fs::read_dir(&canary).unwrap().count(), 1);
    assert_eq!(std::fs::read_to_string(canary.join("keep")).unwrap(), "k");
}

/// End to end: `RUN --mount=type=cache,source=sub` writes under the cache's `sub/`, a later
/// step mounting the whole cache reads it there, and `source=../../etc` is the cache's own
/// (empty, made on demand) `etc`, not the host's.
#[test]
fn dockerfile_cache_sources_are_subdirectories_of_the_cache() {
    let env = support::TestEnv::new();
    support::load_busybox(&env);
    let ctx = tempfile::tempdir().unwrap();
    support::write_file(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:1.35\n\
         RUN --mount=type=cache,id=k,target=/c,source=sub echo in-sub > /c/f\n\
         RUN --mount=type=cache,id=k,target=/c test \"$(cat /c/sub/f)\" = in-sub && ! test -e /c/f\n\
         RUN --mount=type=cache,id=k,target=/c,source=../../etc test ! -e /c/passwd && ls /c | wc -l > /n\n\
         RUN test \"$(cat /n)\" = 0\n",
    );
    let out = env
        .rbuild()
        .args(["build", "--progress", "plain"])
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", support::text(&out));
}
