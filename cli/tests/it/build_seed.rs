//! The seed example of issue 7 end to end: an nginx-like base image made in the test, then
//! `FROM` it + `WORKDIR /usr/share/nginx/html` + `COPY index.html index.html`, built with the
//! bare `rbuild -t customnginx .`, and `rbuild run` shows the new page in place.

use crate::support::{TestEnv, shared_dir, text, write_file as write};
use std::path::Path;

/// `rbuild ARGS...` run inside `dir`; panics with the output when it fails; returns stdout.
fn ok(env: &TestEnv, dir: &Path, args: &[&str]) -> String {
    let out = env.rbuild().current_dir(dir).args(args).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "rbuild {args:?} failed:\n{stderr}");
    stdout
}

/// The custom page replaces the base's default page at the same path, and the image's own
/// command (inherited from the base) serves it.
#[test]
fn customnginx_serves_the_copied_page() {
    let env = TestEnv::new();
    let here = tempfile::tempdir().unwrap();
    ok(
        &env,
        here.path(),
        &[
            "load",
            "-q",
            "-i",
            shared_dir()
                .join("images/busybox-1.35.oci.tar")
                .to_str()
                .unwrap(),
        ],
    );

    // The base: busybox with nginx's document root, a default page and a CMD that "serves" it.
    let base = tempfile::tempdir().unwrap();
    write(
        base.path(),
        "Dockerfile",
        "FROM busybox:1.35\n\
         RUN mkdir -p /usr/share/nginx/html /etc/nginx \\\n \
         && echo '<h1>Welcome to nginx!</h1>' > /usr/share/nginx/html/index.html\n\
         EXPOSE 80\n\
         CMD [\"cat\", \"/usr/share/nginx/html/index.html\"]\n",
    );
    ok(&env, base.path(), &["-t", "nginx:seed", "."]);
    let default_page = ok(&env, here.path(), &["run", "--rm", "nginx:seed"]);
    assert_eq!(default_page, "<h1>Welcome to nginx!</h1>\n");

    // The seed example, in the bare form.
    let site = tempfile::tempdir().unwrap();
    write(
        site.path(),
        "Dockerfile",
        "FROM nginx:seed\nWORKDIR /usr/share/nginx/html\nCOPY index.html index.html\n",
    );
    let page = "<!doctype html>\n<h1>Hello from customnginx</h1>\n";
    write(site.path(), "index.html", page);
    ok(&env, site.path(), &["-t", "customnginx", "."]);

    let shown = ok(
        &env,
        here.path(),
        &[
            "run",
            "--rm",
            "customnginx",
            "cat",
            "/usr/share/nginx/html/index.html",
        ],
    );
    assert_eq!(shown, page);
    // The base's CMD is inherited and now shows the new page.
    assert_eq!(ok(&env, here.path(), &["run", "--rm", "customnginx"]), page);
    // Nothing else in the document root changed, and the base is untouched.
    let listing = ok(
        &env,
        here.path(),
        &["run", "--rm", "customnginx", "ls", "/usr/share/nginx/html"],
    );
    assert_eq!(listing, "index.html\n");
    assert_eq!(
        ok(&env, here.path(), &["run", "--rm", "nginx:seed"]),
        default_page
    );
    let images = ok(&env, here.path(), &["images"]);
    assert!(images.contains("customnginx"), "{images}");
}
