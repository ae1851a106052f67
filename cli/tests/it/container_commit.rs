//! `rbuild commit`: a stopped container's changes (added, changed and deleted files) become one
//! new layer over its image, `--change` and `-m`/`-a` shape the config and history as `docker
//! commit` does, the image runs with them, a container that changed nothing adds no layer, a
//! running one is refused, and the store stays consistent.

use crate::support::containers::Reaper;
use crate::support::{TestEnv, load_busybox, text};

fn ok(env: &TestEnv, args: &[&str]) -> String {
    let out = env.rbuild().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {:?}", text(&out));
    text(&out).0
}

#[test]
fn commit_turns_a_containers_changes_into_an_image_layer() {
    let env = TestEnv::new();
    load_busybox(&env);
    let _reaper = Reaper(&env);
    ok(
        &env,
        &[
            "run",
            "--name",
            "work",
            "busybox:1.35",
            "sh",
            "-c",
            "echo committed > /hello; rm /bin/vi; echo changed >> /etc/motd",
        ],
    );
    let id = ok(
        &env,
        &[
            "commit",
            "-m",
            "add hello",
            "-a",
            "Ann <ann@example.com>",
            "-c",
            "CMD [\"cat\", \"/hello\"]",
            "-c",
            "ENV GREETING=hi",
            "-c",
            "WORKDIR /app",
            "work",
            "mine:v1",
        ],
    );
    assert!(id.starts_with("sha256:") && id.trim().len() == 71, "{id}");
    // The image runs with the changes and the new config.
    assert_eq!(ok(&env, &["run", "--rm", "mine:v1"]), "committed\n");
    assert_eq!(
        ok(
            &env,
            &[
                "run",
                "--rm",
                "mine:v1",
                "sh",
                "-c",
                "ls /bin/vi 2>/dev/null || echo vi-gone; echo $GREETING; pwd; cat /etc/motd"
            ]
        ),
        "vi-gone\nhi\n/app\nchanged\n"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&env, &["inspect", "mine:v1"])).unwrap();
    let img = &inspect[0];
    assert_eq!(img["Author"], "Ann <ann@example.com>", "{img}");
    assert_eq!(
        img["RootFS"]["Layers"].as_array().unwrap().len(),
        2,
        "{img}"
    );
    let history = ok(&env, &["history", "--no-trunc", "mine:v1"]);
    let top = history.lines().nth(1).unwrap();
    assert!(top.contains("sh -c echo committed > /hello"), "{top}");
    assert!(top.ends_with("add hello"), "{top}");

    // Nothing changed: no new layer, an empty history entry.
    ok(&env, &["run", "--name", "idle", "busybox:1.35", "true"]);
    ok(&env, &["commit", "idle", "idle:v1"]);
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&env, &["inspect", "idle:v1"])).unwrap();
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 1);

    // Refusals: a running container, an unknown one, a bad --change.
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "busy",
            "busybox:1.35",
            "sleep",
            "1000",
        ],
    );
    let out = env.rbuild().args(["commit", "busy"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("stop it first"), "{:?}", text(&out));
    let out = env.rbuild().args(["commit", "nope"]).output().unwrap();
    assert!(text(&out).1.contains("no such container"));
    let out = env
        .rbuild()
        .args(["commit", "-c", "RUN echo no", "work"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("invalid --change"),
        "{:?}",
        text(&out)
    );
    ok(&env, &["rm", "-f", "busy"]);
    ok(&env, &["store", "fsck", "--full"]);
}
