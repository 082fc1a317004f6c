//! Installing like a real tool: the man page and shell completions shipped in
//! `packaging/` are what the binary generates, `--version` names the git revision,
//! the keepalived check follows `/health/ready`, and the .deb built by cargo-deb
//! holds the binary, the unit, the default config and the user.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::spawned::{binary, temp_dir};
use support::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_shipped_man_page_and_completions_are_what_the_binary_generates() {
    for (args, file) in [
        (vec!["man"], "packaging/man/switchyard.1"),
        (
            vec!["completions", "bash"],
            "packaging/completions/switchyard.bash",
        ),
        (
            vec!["completions", "zsh"],
            "packaging/completions/_switchyard",
        ),
        (
            vec!["completions", "fish"],
            "packaging/completions/switchyard.fish",
        ),
    ] {
        let out = run(binary(), &args);
        assert!(out.status.success(), "{}", text(&out));
        let shipped = std::fs::read(repo(file)).unwrap();
        assert!(
            out.stdout == shipped,
            "{file} is stale: regenerate it with `switchyard {} > {file}`",
            args.join(" ")
        );
    }
    let man = std::fs::read_to_string(repo("packaging/man/switchyard.1")).unwrap();
    for needle in ["upgrade", "SIGUSR2", "SWITCHYARD_CONFIG", "completions"] {
        assert!(man.contains(needle), "the man page mentions {needle}");
    }
    let bash = std::fs::read_to_string(repo("packaging/completions/switchyard.bash")).unwrap();
    assert!(
        bash.contains("complete -F _switchyard"),
        "a bash completion"
    );
    assert!(bash.contains("upgrade") && bash.contains("rollout"));
}

#[test]
fn version_names_the_git_revision() {
    let out = run(binary(), &["--version"]);
    assert!(out.status.success());
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let prefix = format!("switchyard {} (rev ", env!("CARGO_PKG_VERSION"));
    assert!(
        version.starts_with(&prefix) && version.ends_with(')'),
        "{version}"
    );
    let head = Command::new("git")
        .current_dir(repo(""))
        .args(["rev-parse", "--short=12", "HEAD"])
        .output();
    match head {
        Ok(head) if head.status.success() => {
            let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
            assert_eq!(version, format!("{prefix}{head})"));
        }
        // A source tarball: the build says so instead of failing.
        _ => assert_eq!(version, format!("{prefix}unknown)")),
    }
}

/// Runs the shipped keepalived check against `admin`: its exit status.
fn check(admin: SocketAddr, token: Option<&str>) -> std::process::ExitStatus {
    let mut command = Command::new("sh");
    command
        .arg(repo("packaging/keepalived/check_switchyard.sh"))
        .arg(admin.to_string())
        .env_remove("SWITCHYARD_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("SWITCHYARD_ADMIN_TOKEN", token);
    }
    command.status().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keepalived_check_passes_only_while_the_proxy_is_ready() {
    if Command::new("curl").arg("--version").output().is_err() {
        skip_or_fail("curl not installed: skipping the keepalived check script");
        return;
    }
    let backend = TestBackend::start("app").await;
    let token = "0123456789abcdef-keepalived";
    let proxy = start_proxy(&format!(
        "{}\n[pool.app.health]\ntype = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\nfall = 1\n",
        simple_config(&[&backend], "")
            .replace("[admin]\n", &format!("[admin]\ntoken = \"{token}\"\n"))
    ))
    .await;
    let admin = proxy.admin;
    let ready = tokio::task::spawn_blocking(move || check(admin, Some(token)))
        .await
        .unwrap();
    assert!(ready.success(), "ready proxy: {ready:?}");
    let no_token = tokio::task::spawn_blocking(move || check(admin, None))
        .await
        .unwrap();
    assert!(!no_token.success(), "the admin API wants its token");

    // The only backend goes down: the pool has none usable, the node must yield.
    backend.kill();
    assert!(
        eventually(Duration::from_secs(10), || {
            proxy
                .server
                .snapshot()
                .pools
                .get("app")
                .is_some_and(|p| p.usable_count(switchyard::clock::now_ms()) == 0)
        })
        .await
    );
    let unusable = tokio::task::spawn_blocking(move || check(admin, Some(token)))
        .await
        .unwrap();
    assert!(!unusable.success(), "no usable backend: {unusable:?}");

    // Back, then stopping: a draining proxy is not ready either.
    let _backend = backend.revive().await;
    assert!(
        eventually(Duration::from_secs(10), || {
            proxy
                .server
                .snapshot()
                .pools
                .get("app")
                .is_some_and(|p| p.usable_count(switchyard::clock::now_ms()) == 1)
        })
        .await
    );
    assert!(
        tokio::task::spawn_blocking(move || check(admin, Some(token)))
            .await
            .unwrap()
            .success()
    );
    proxy.server.stop_accepting();
    let stopping = tokio::task::spawn_blocking(move || check(admin, Some(token)))
        .await
        .unwrap();
    assert!(!stopping.success(), "stopping: {stopping:?}");

    // The example config names the script where the package installs it.
    let conf = std::fs::read_to_string(repo("packaging/keepalived/keepalived.conf")).unwrap();
    assert!(conf.contains(
        "script \"/usr/share/switchyard/keepalived/check_switchyard.sh 127.0.0.1:9901\""
    ));
    assert!(conf.contains("track_script") && conf.contains("chk_switchyard"));
}

#[test]
fn the_deb_holds_the_binary_unit_config_and_user() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    if !Command::new(&cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        skip_or_fail("cargo-deb not installed (cargo install cargo-deb): skipping the .deb");
        return;
    }
    // cargo-deb packages target/release/switchyard; the binary under test stands in
    // for a release build (which takes far longer than this test should).
    let dir = temp_dir("deb");
    let release = dir.join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::copy(binary(), release.join("switchyard")).unwrap();
    let deb = dir.join("switchyard.deb");
    let out = Command::new(&cargo)
        .current_dir(repo(""))
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .args([
            "deb",
            "-p",
            "switchyard",
            "--no-build",
            "--no-strip",
            "--fast",
            "--output",
        ])
        .arg(&deb)
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo deb: {}", text(&out));

    let contents = text(&run("dpkg-deb", &["--contents", deb.to_str().unwrap()]));
    for path in [
        "./usr/bin/switchyard",
        "./usr/lib/systemd/system/switchyard.service",
        "./etc/switchyard/switchyard.toml",
        "./usr/share/man/man1/switchyard.1.gz",
        "./usr/share/bash-completion/completions/switchyard",
        "./usr/share/zsh/vendor-completions/_switchyard",
        "./usr/share/fish/vendor_completions.d/switchyard.fish",
        "./usr/share/switchyard/prometheus/alerts.yml",
        "./usr/share/switchyard/grafana/switchyard-dashboard.json",
        "./usr/share/switchyard/keepalived/check_switchyard.sh",
        "./usr/share/doc/switchyard/examples/switchyard.toml",
    ] {
        assert!(
            contents.contains(path),
            "{path} not in the package:\n{contents}"
        );
    }
    let config_line = contents
        .lines()
        .find(|l| l.ends_with("./etc/switchyard/switchyard.toml"))
        .unwrap();
    assert!(config_line.starts_with("-rw-r-----"), "{config_line}");

    let control = dir.join("control");
    assert!(
        run(
            "dpkg-deb",
            &["-e", deb.to_str().unwrap(), control.to_str().unwrap()]
        )
        .status
        .success()
    );
    let read = |name: &str| std::fs::read_to_string(control.join(name)).unwrap_or_default();
    assert_eq!(read("conffiles").trim(), "/etc/switchyard/switchyard.toml");
    let fields = read("control");
    assert!(fields.contains("Depends: adduser"), "{fields}");
    let postinst = read("postinst");
    assert!(postinst.contains("adduser --system --group"), "{postinst}");
    assert!(postinst.contains("deb-systemd-helper enable switchyard.service"));
    assert!(
        postinst.contains("kill -USR2"),
        "upgrades hand over: {postinst}"
    );
    assert!(
        !postinst.contains("deb-systemd-invoke"),
        "installing neither starts nor restarts the service: {postinst}"
    );

    let root = dir.join("root");
    assert!(
        run(
            "dpkg-deb",
            &["-x", deb.to_str().unwrap(), root.to_str().unwrap()]
        )
        .status
        .success()
    );
    assert_eq!(
        std::fs::read(root.join("usr/lib/systemd/system/switchyard.service")).unwrap(),
        std::fs::read(repo("packaging/systemd/switchyard.service")).unwrap()
    );
    let installed = root.join("usr/bin/switchyard");
    let version = run(&installed, &["--version"]);
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("switchyard "));
    let config = root.join("etc/switchyard/switchyard.toml");
    let checked = run(&installed, &["check", "--config", config.to_str().unwrap()]);
    assert!(
        checked.status.success(),
        "the default config: {}",
        text(&checked)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
