//! What `switchyard check` prints for a bad file, exactly: every problem of the file in
//! one run, each as `file:line:col: dotted.path: message`, with the name a near miss
//! probably meant; and the README's example, run through the binary so the README's
//! text stays the real output.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh directory for one test's files.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-config-errors-{tag}-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `switchyard ARGS` run in `dir` with none of the proxy's variables set except
/// `env`; returns whether it succeeded and its stdout and stderr.
fn run_in(dir: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("SWITCHYARD_CONFIG")
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .env_remove("SWITCHYARD_ETCD_PASSWORD");
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What `switchyard check --config switchyard.toml` prints for `text`, which must be
/// refused.
fn refused(text: &str) -> String {
    refused_with(text, &[])
}

fn refused_with(text: &str, env: &[(&str, &OsStr)]) -> String {
    let dir = temp_dir("check");
    std::fs::write(dir.join("switchyard.toml"), text).unwrap();
    let (ok, stdout, stderr) = run_in(&dir, &["check", "--config", "switchyard.toml"], env);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok, "accepted:\n{text}\n{stdout}");
    assert_eq!(stdout, "", "a refused file prints nothing on stdout");
    stderr
}

/// A listener, a route and pool `app`: nine lines, so what follows starts at line 10.
const BASE: &str = "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:8080\"\n\
    [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\
    [pool.app]\nbackends = [{ address = \"127.0.0.1:9001\" }]\n";

#[test]
fn two_mistakes_in_one_file_are_both_reported() {
    let text =
        format!("{BASE}[pool.app.helth]\npath = \"/health\"\n[pool.app.retry]\natempts = 3\n");
    assert_eq!(
        refused(&text),
        "switchyard.toml:10:11: pool.app.helth: unknown field, did you mean `health`?\n\
         switchyard.toml:13:1: pool.app.retry.atempts: unknown field, did you mean `attempts`?\n"
    );
}

#[test]
fn an_unknown_field_names_its_dotted_path_and_the_field_meant() {
    let text = BASE.replace(
        "backends = [{ address = \"127.0.0.1:9001\" }]",
        "balanse = \"weighted\"\nbackends = [{ address = \"127.0.0.1:9001\", wieght = 2 }]",
    );
    assert_eq!(
        refused(&text),
        "switchyard.toml:9:1: pool.app.balanse: unknown field, did you mean `balance`?\n\
         switchyard.toml:10:43: pool.app.backends[0].wieght: unknown field, did you mean `weight`?\n"
    );
    // With no near name, the fields the table has.
    assert_eq!(
        refused(&format!("{BASE}[limits]\ncolour = \"blue\"\n")),
        "switchyard.toml:11:1: limits.colour: unknown field; expected one of: header_read_timeout, \
         idle_timeout, max_header_bytes, max_headers, max_connections, drain_timeout, \
         connect_timeout, upstream_idle_per_backend, upstream_idle_timeout, body_idle_timeout, \
         body_timeout, max_body_bytes, max_uri_bytes, tunnel_idle_timeout, max_connections_per_ip\n"
    );
}

#[test]
fn a_bad_choice_suggests_the_near_one_and_lists_every_choice() {
    let text = format!(
        "{BASE}balance = \"least_request\"\n[pool.app.retry]\non = [\"reset\", \"time-out\"]\n"
    );
    assert_eq!(
        refused(&text),
        "switchyard.toml:10:11: pool.app.balance: unknown balance `least_request`, did you mean \
         `least-request`? Expected one of: round-robin, weighted, least-request, hash, plugin:NAME\n\
         switchyard.toml:12:16: pool.app.retry.on[1]: unknown retry condition `time-out`, did you \
         mean `timeout`? Expected one of: connect-failure, reset, timeout, 500, 502, 503, 504\n"
    );
}

#[test]
fn an_unknown_pool_suggests_the_near_one() {
    let text = format!(
        "{BASE}[pool.app.failover]\nbackup = \"statc\"\n\
         [pool.static]\nbackends = [{{ address = \"127.0.0.1:9002\" }}]\n\
         [[route]]\nname = \"assets\"\nlistener = \"web\"\npath_prefix = \"/assets\"\npool = \"sttic\"\n"
    );
    assert_eq!(
        refused(&text),
        "switchyard.toml:11:10: pool.app.failover.backup: no pool named `statc`, did you mean \
         `static`? Defined: static\n\
         switchyard.toml:18:8: route[1].pool: no pool named `sttic`, did you mean `static`? \
         Defined: app, static\n"
    );
}

#[test]
fn a_file_or_variable_that_cannot_be_read_is_reported_at_its_field() {
    // Paths are resolved against the config's directory, here the working directory.
    let text = BASE.replace(
        "listen = \"127.0.0.1:8080\"\n",
        "listen = \"127.0.0.1:8443\"\ntls = { cert = \"missing.pem\", key = \"certs\" }\n",
    );
    let dir = temp_dir("files");
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    std::fs::write(dir.join("switchyard.toml"), &text).unwrap();
    let (ok, _, stderr) = run_in(&dir, &["check", "--config", "switchyard.toml"], &[]);
    assert!(!ok);
    assert_eq!(
        stderr,
        "switchyard.toml:4:16: listener[0].tls.cert: file missing.pem does not exist\n\
         switchyard.toml:4:37: listener[0].tls.key: certs is a directory; expected a file\n"
    );
    let _ = std::fs::remove_dir_all(&dir);

    // A token variable that is not text is a read failure of `admin.token`.
    let garbled = OsStr::from_bytes(b"\xff\xfe-not-utf-8-at-all");
    assert_eq!(
        refused_with(BASE, &[("SWITCHYARD_ADMIN_TOKEN", garbled)]),
        "switchyard.toml: admin.token: SWITCHYARD_ADMIN_TOKEN is set but is not valid UTF-8\n"
    );
    let short = OsStr::new("tooshort");
    assert_eq!(
        refused_with(BASE, &[("SWITCHYARD_ADMIN_TOKEN", short)]),
        "switchyard.toml: admin.token: from SWITCHYARD_ADMIN_TOKEN: the bearer token is 8 bytes; \
         use at least 16 (e.g. `openssl rand -hex 24`)\n"
    );
}

/// The first fenced block after the line containing `marker`: its language tag and
/// its text.
fn block_after<'a>(readme: &'a str, marker: &str) -> (&'a str, &'a str) {
    let after = &readme[readme
        .find(marker)
        .unwrap_or_else(|| panic!("no `{marker}`"))..];
    let open = after
        .find("```")
        .expect("a fenced block follows the marker");
    let rest = &after[open + 3..];
    let (tag, body) = rest.split_once('\n').expect("a fenced block");
    let end = body.find("```").expect("the fenced block ends");
    (tag, &body[..end])
}

#[test]
fn the_readme_example_error_is_what_check_prints() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let (tag, config) = block_after(&readme, "<!-- example config:");
    assert_eq!(tag, "toml");
    let (tag, console) = block_after(&readme, "<!-- example output -->");
    assert_eq!(tag, "console");
    let (command, shown) = console
        .split_once('\n')
        .expect("a command line, then its output");
    let args: Vec<&str> = command
        .strip_prefix("$ switchyard ")
        .expect("the README shows the command it runs")
        .split_whitespace()
        .collect();
    assert_eq!(args, ["check", "--config", "switchyard.toml"]);

    let dir = temp_dir("readme");
    std::fs::write(dir.join("switchyard.toml"), config).unwrap();
    let (ok, stdout, stderr) = run_in(&dir, &args, &[]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok, "the README's example config was accepted: {stdout}");
    assert_eq!(
        stderr, shown,
        "README.md's example output is not what `switchyard check` prints"
    );
    // The list of balances it shows is the whole list.
    assert!(
        shown.contains("round-robin, weighted, least-request, hash, plugin:NAME"),
        "{shown}"
    );
}
