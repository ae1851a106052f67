//! ONBUILD on the busybox fixture: triggers stored by a base build run in a child build right
//! after its FROM (in the child's context), are not inherited by grandchildren, and a trigger
//! that cannot be planned is reported at the child's FROM line.

use crate::support::{TestEnv, load_busybox, text, write_file as write};
use std::path::Path;

/// `rbuild build -q -t TAG [extra...] CTX`, returning the output.
fn build(env: &TestEnv, tag: &str, ctx: &Path, extra: &[&str]) -> std::process::Output {
    env.rbuild()
        .args(["build", "-q", "-t", tag])
        .args(extra)
        .arg(ctx)
        .output()
        .unwrap()
}

fn config(env: &TestEnv, tag: &str) -> rbuild_store::ImageConfig {
    let store = rbuild_store::Store::open(env.root()).unwrap();
    store.resolve_image(tag).unwrap().config
}

/// A child of a base with `ONBUILD COPY` and `ONBUILD RUN` gets the file from its own context
/// and the RUN's output, with BuildKit's history texts; its config has no OnBuild, and a
/// grandchild (whose context lacks the file) builds without running the triggers again.
#[test]
fn onbuild_triggers_run_in_the_child_build() {
    let env = TestEnv::new();
    load_busybox(&env);
    let base = tempfile::tempdir().unwrap();
    write(
        base.path(),
        "Dockerfile",
        "FROM busybox:1.35\nONBUILD COPY ob.txt /onbuild/\nONBUILD RUN echo hi > /hi\n",
    );
    let out = build(&env, "obbase", base.path(), &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    let base_config = config(&env, "obbase").config.unwrap();
    assert_eq!(
        base_config.on_build,
        Some(vec![
            "COPY ob.txt /onbuild/".to_string(),
            "RUN echo hi > /hi".to_string()
        ])
    );

    let child = tempfile::tempdir().unwrap();
    write(
        child.path(),
        "Dockerfile",
        "FROM obbase\nRUN cat /onbuild/ob.txt /hi > /both\n",
    );
    write(child.path(), "ob.txt", "from the child\n");
    let dest = tempfile::tempdir().unwrap();
    let local = format!("type=local,dest={}", dest.path().join("fs").display());
    let out = build(&env, "obchild", child.path(), &["-o", &local]);
    assert!(out.status.success(), "{:?}", text(&out));
    let fs = dest.path().join("fs");
    let read = |p: &str| std::fs::read_to_string(fs.join(p)).unwrap();
    assert_eq!(read("onbuild/ob.txt"), "from the child\n");
    assert_eq!(read("hi"), "hi\n");
    assert_eq!(read("both"), "from the child\nhi\n");

    let child_config = config(&env, "obchild");
    assert_eq!(child_config.config.unwrap().on_build, None);
    let history: Vec<String> = child_config
        .history
        .iter()
        .filter_map(|h| h.created_by.clone())
        .collect();
    let n = history.len();
    assert_eq!(
        history[n - 3..],
        [
            "COPY ob.txt /onbuild/ # buildkit",
            "RUN /bin/sh -c echo hi > /hi # buildkit",
            "RUN /bin/sh -c cat /onbuild/ob.txt /hi > /both # buildkit",
        ]
    );

    let grandchild = tempfile::tempdir().unwrap();
    write(grandchild.path(), "Dockerfile", "FROM obchild\n");
    let out = build(&env, "obgrandchild", grandchild.path(), &[]);
    assert!(out.status.success(), "{:?}", text(&out));
}

/// A trigger that fails to plan in the child (a required variable the child does not set) is
/// a report at the child's FROM line naming the trigger; nothing is tagged.
#[test]
fn bad_onbuild_trigger_is_reported_at_the_from_line() {
    let env = TestEnv::new();
    load_busybox(&env);
    let base = tempfile::tempdir().unwrap();
    write(
        base.path(),
        "Dockerfile",
        "FROM busybox:1.35\nONBUILD RUN true\nONBUILD COPY ${NEEDED:?unset} /x\n",
    );
    let out = build(&env, "badbase", base.path(), &[]);
    assert!(out.status.success(), "{:?}", text(&out));

    let child = tempfile::tempdir().unwrap();
    write(
        child.path(),
        "Dockerfile",
        "# child\nFROM badbase\nRUN true\n",
    );
    let out = build(&env, "badchild", child.path(), &[]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("ONBUILD trigger #2 of `badbase`")
            && stderr.contains("COPY ${NEEDED:?unset} /x")
            && stderr.contains("unset"),
        "{stderr}"
    );
    assert!(stderr.contains("2 | FROM badbase"), "{stderr}");
    let store = rbuild_store::Store::open(env.root()).unwrap();
    assert!(store.resolve_image("badchild").is_err());
}
