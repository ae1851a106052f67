//! `rbuild run -v`, `--mount type=bind|volume|tmpfs`, `--hostname`, `--read-only` and `--init`:
//! host files are read and written through binds (read-only when asked), named volumes keep
//! their data in the store across containers and are created on first use, tmpfs mounts are
//! sized, nothing mounted lands in the container's layer, and bad specifications are clear
//! errors that create no container.

use crate::support::containers::{Reaper, ps_all};
use crate::support::{TestEnv, load_busybox, text};

fn run(env: &TestEnv, args: &[&str]) -> std::process::Output {
    env.rbuild().arg("run").args(args).output().unwrap()
}

#[test]
fn binds_volumes_and_tmpfs_mounts() {
    let env = TestEnv::new();
    load_busybox(&env);
    let _reaper = Reaper(&env);
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), "from-host\n").unwrap();
    let bind = format!("{}:/h", host.path().display());
    let out = run(
        &env,
        &[
            "--name",
            "writer",
            "-v",
            &bind,
            "-v",
            "store-vol:/v",
            "--mount",
            "type=tmpfs,target=/t,tmpfs-size=1m",
            "busybox:1.35",
            "sh",
            "-c",
            "cat /h/in; echo from-container > /h/out; echo kept > /v/data; \
             df -k /t | tail -1 | awk '{print $2}'; echo x > /t/f",
        ],
    );
    assert_eq!(text(&out).0, "from-host\n1024\n", "{:?}", text(&out));
    assert_eq!(
        std::fs::read_to_string(host.path().join("out")).unwrap(),
        "from-container\n"
    );
    let data = env.root().join("volumes/store-vol/_data/data");
    assert_eq!(std::fs::read_to_string(&data).unwrap(), "kept\n");
    // What went to mounts is not in the container's layer.
    let id = ps_all(env.rbuild());
    assert_eq!(id.len(), 1);
    let dirs: Vec<_> = std::fs::read_dir(env.root().join("containers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    let upper = dirs[0].join("upper");
    for p in ["h/out", "v/data", "t/f"] {
        assert!(!upper.join(p).exists(), "{p} landed in the layer");
    }
    // A second container sees the volume; read-only binds and volumes refuse writes.
    let ro = format!("{}:/h:ro", host.path().display());
    let out = run(
        &env,
        &[
            "--rm",
            "-v",
            &ro,
            "--mount",
            "type=volume,source=store-vol,target=/v,readonly",
            "busybox:1.35",
            "sh",
            "-c",
            "cat /v/data; echo no > /v/data || echo vol-ro; echo no > /h/in || echo bind-ro",
        ],
    );
    assert_eq!(text(&out).0, "kept\nvol-ro\nbind-ro\n", "{:?}", text(&out));
    assert_eq!(
        std::fs::read_to_string(host.path().join("in")).unwrap(),
        "from-host\n"
    );
    // `--mount type=bind` (source must exist), and `-v` creating a missing host directory.
    let made = host.path().join("made/by/v");
    let out = run(
        &env,
        &[
            "--rm",
            "-v",
            &format!("{}:/m", made.display()),
            "busybox:1.35",
            "touch",
            "/m/x",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(made.join("x").exists());
    let missing = host.path().join("missing");
    let out = run(
        &env,
        &[
            "--rm",
            "--mount",
            &format!("type=bind,source={},target=/x", missing.display()),
            "busybox:1.35",
            "true",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out).1;
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(stderr.contains("--mount"), "{stderr}");
    let out = run(
        &env,
        &[
            "-d",
            "--mount",
            &format!("type=bind,source={},target=/x", missing.display()),
            "busybox:1.35",
            "true",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("does not exist"));
    for bad in [
        vec!["-v", "/a:relative"],
        vec!["-v", "../x:/y"],
        vec!["--mount", "type=nfs,target=/x"],
        vec![
            "--mount",
            "type=bind,source=/tmp,target=/x,propagation=rshared",
        ],
    ] {
        let mut args = bad.clone();
        args.extend(["busybox:1.35", "true"]);
        let out = run(&env, &args);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {:?}", text(&out));
    }
    // No failed attempt left a container behind.
    assert_eq!(ps_all(env.rbuild()).len(), 1);
    // A detached container mounts too.
    let out = run(
        &env,
        &[
            "-d",
            "--rm",
            "-v",
            "store-vol:/v",
            "busybox:1.35",
            "sh",
            "-c",
            "echo more >> /v/data",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    crate::support::containers::wait_until(
        "the detached container wrote the volume",
        std::time::Duration::from_secs(20),
        || std::fs::read_to_string(&data).unwrap() == "kept\nmore\n",
    );
}

#[test]
fn hostname_read_only_and_init() {
    let env = TestEnv::new();
    load_busybox(&env);
    let out = run(
        &env,
        &[
            "--rm",
            "--hostname",
            "box.example",
            "busybox:1.35",
            "sh",
            "-c",
            "hostname; grep -c box.example /etc/hosts",
        ],
    );
    assert_eq!(text(&out).0, "box.example\n1\n", "{:?}", text(&out));
    let out = run(
        &env,
        &["--rm", "--hostname", "bad_name!", "busybox:1.35", "true"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("not a valid hostname"));

    let host = tempfile::tempdir().unwrap();
    let bind = format!("{}:/h", host.path().display());
    let out = run(
        &env,
        &[
            "--rm",
            "--read-only",
            "-v",
            &bind,
            "busybox:1.35",
            "sh",
            "-c",
            "touch /x 2>/dev/null || echo root-ro; touch /h/ok && echo bind-rw; \
             touch /dev/shm/s && echo shm-rw; echo 1 > /etc/hosts && echo hosts-rw",
        ],
    );
    assert_eq!(
        text(&out).0,
        "root-ro\nbind-rw\nshm-rw\nhosts-rw\n",
        "{:?}",
        text(&out)
    );
    // Without --read-only the root is writable (the test above can fail).
    let out = run(
        &env,
        &[
            "--rm",
            "busybox:1.35",
            "sh",
            "-c",
            "touch /x && echo root-rw",
        ],
    );
    assert_eq!(text(&out).0, "root-rw\n");

    // PID 1 is an init that reaps orphans: a background child whose parent is gone exits
    // and leaves no zombie, with or without --init.
    for init in [true, false] {
        let mut args = vec!["--rm"];
        if init {
            args.push("--init");
        }
        args.extend([
            "busybox:1.35",
            "sh",
            "-c",
            "(sleep 0.2 &); sleep 1; ps -o stat,args | grep -c '^Z' ; cat /proc/1/cmdline | tr '\\0' ' '",
        ]);
        let out = run(&env, &args);
        assert_eq!(
            text(&out).0,
            "0\nrbuild-sandbox __rbuild-sandbox ",
            "init {init}: {:?}",
            text(&out)
        );
    }
}
