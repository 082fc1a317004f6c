//! Builds the policy plugins in `plugins/` as WebAssembly components, so a
//! fresh clone gets working plugins from `cargo build`, `cargo test` and
//! `cargo run` alone, and embeds what `switchyard plugin new` writes out.
//!
//! The plugins are a separate cargo workspace built for `wasm32-wasip2`. It
//! gets its own target directory (`target/wasm-plugins` at the repository
//! root, or `$SWITCHYARD_PLUGIN_TARGET_DIR`), so the nested cargo never waits
//! on the lock of the build that runs this script.
//!
//! Exported to the crate at compile time:
//! - `SWITCHYARD_PLUGIN_DIR`: directory holding the shipped plugins under the
//!   names cargo gives them (`canary.wasm`, `latency.wasm`, `json_health.wasm`,
//!   `adaptive_breaker.wasm`, and the `tenant_pin.wasm` example);
//! - `SWITCHYARD_TEST_PLUGIN_DIR`: directory holding the hostile test
//!   plugins (`hostile.wasm`, `hostile_health.wasm`, `wrong_world.wasm`,
//!   `legacy_health.wasm`);
//! - `SWITCHYARD_PLUGIN_BUILD_DIR`: the plugins' target directory, which tests
//!   building plugin crates share so dependencies compile once;
//! - `OUT_DIR/scaffold_files.rs`: the SDK crate (`plugins/sdk`), the WIT
//!   package (`wit/`) and the plugins' `Cargo.lock`, as `(path, contents)`
//!   pairs for `switchyard plugin new`.
//!
//! - `SWITCHYARD_REVISION`: the git revision the binary was built from, for
//!   `switchyard --version` and `/status`: `SWITCHYARD_REVISION` from the
//!   environment when set (packagers building from a tarball), else
//!   `git rev-parse --short=12 HEAD`, else `unknown` (no `.git`, no git).
//!
//! Set `SWITCHYARD_SKIP_PLUGIN_BUILD=1` to skip the nested build (the
//! variables are still set; the files may then be missing).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Plugins shipped for operators, by the file name cargo gives them (the name
/// every document uses).
const SHIPPED: &[&str] = &[
    "canary",
    "latency",
    "json_health",
    "adaptive_breaker",
    "tenant_pin",
];

/// Plugins that only exist to test the sandbox and compatibility.
const TESTING: &[&str] = &["hostile", "hostile_health", "wrong_world", "legacy_health"];

/// Directories of `plugins/` that hold no plugin source.
const NOT_SOURCES: &[&str] = &["target", "node_modules", "dist"];

const WASM_TARGET: &str = "wasm32-wasip2";

/// Variables the outer cargo sets (or a user may set for the outer build)
/// that would break or redirect the nested build.
const REMOVED_VARS: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_LINKER",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
];

/// Prefixes of per-target or per-package variables set by the outer cargo.
const REMOVED_PREFIXES: &[&str] = &[
    "CARGO_CFG_",
    "CARGO_FEATURE_",
    "CARGO_PKG_",
    "CARGO_TARGET_",
    "CARGO_PROFILE_",
    "DEP_",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir
        .parent()
        .expect("the proxy crate sits inside the repository")
        .to_path_buf();
    let plugins = root.join("plugins");
    let target_dir = env::var_os("SWITCHYARD_PLUGIN_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target").join("wasm-plugins"));
    let shipped_dir = target_dir.join("dist");
    let testing_dir = shipped_dir.join("testing");

    emit_revision(&root);
    println!("cargo:rerun-if-env-changed=SWITCHYARD_PLUGIN_TARGET_DIR");
    println!("cargo:rerun-if-env-changed=SWITCHYARD_SKIP_PLUGIN_BUILD");
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    watch_sources(&plugins);
    embed_scaffold(&root);
    println!(
        "cargo:rustc-env=SWITCHYARD_PLUGIN_DIR={}",
        shipped_dir.display()
    );
    println!(
        "cargo:rustc-env=SWITCHYARD_TEST_PLUGIN_DIR={}",
        testing_dir.display()
    );
    println!(
        "cargo:rustc-env=SWITCHYARD_PLUGIN_BUILD_DIR={}",
        target_dir.display()
    );

    if env::var_os("SWITCHYARD_SKIP_PLUGIN_BUILD").is_some_and(|v| v != "0") {
        println!("cargo:warning=SWITCHYARD_SKIP_PLUGIN_BUILD is set: plugins not built");
        return;
    }
    check_wasm_target();
    build_plugins(&plugins, &target_dir);

    let built = target_dir.join(WASM_TARGET).join("release");
    publish(&built, &shipped_dir, SHIPPED);
    publish(&built, &testing_dir, TESTING);
}

/// Exports `SWITCHYARD_REVISION` and asks for a rerun when HEAD moves. Only
/// paths that exist are watched: cargo reruns a script on every build for a
/// watched path that is missing.
fn emit_revision(root: &Path) {
    println!("cargo:rerun-if-env-changed=SWITCHYARD_REVISION");
    let from_env = env::var("SWITCHYARD_REVISION")
        .ok()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
        (!text.is_empty()).then_some(text)
    };
    let revision = from_env
        .clone()
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]));
    if from_env.is_none() {
        let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
        if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(git(&["rev-parse", "--git-path", &reference]));
        }
        watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
        for path in watched.into_iter().flatten() {
            let path = root.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    println!(
        "cargo:rustc-env=SWITCHYARD_REVISION={}",
        revision.as_deref().unwrap_or("unknown")
    );
}

/// Emits `rerun-if-changed` for every source file of the plugin workspace,
/// skipping build output so a manual build inside `plugins/` does not
/// trigger a rebuild here.
fn watch_sources(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| NOT_SOURCES.iter().any(|skip| n == *skip))
            {
                continue;
            }
            watch_sources(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// Fails early, with the fix, when the toolchain lacks the wasm target.
fn check_wasm_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let Some(sysroot) = sysroot else {
        panic!(
            "could not run `{} --print sysroot`",
            rustc.to_string_lossy()
        );
    };
    let installed = || sysroot.join("lib/rustlib").join(WASM_TARGET).exists();
    if !installed() {
        install_wasm_target();
    }
    if !installed() {
        panic!(
            "the `{WASM_TARGET}` Rust target is not installed, and Switchyard needs it to \
             build its policy plugins.\n\
             Install it with:  rustup target add {WASM_TARGET}\n\
             (or set SWITCHYARD_SKIP_PLUGIN_BUILD=1 to build without plugins)"
        );
    }
}

/// Under rustup, does what `rust-toolchain.toml` asks for but rustup skips when the
/// toolchain is already installed: adds the wasm target to the active toolchain.
fn install_wasm_target() {
    let Some(toolchain) = env::var_os("RUSTUP_TOOLCHAIN") else {
        return;
    };
    println!(
        "cargo:warning=installing the {WASM_TARGET} target with rustup (listed in rust-toolchain.toml)"
    );
    let status = Command::new("rustup")
        .arg("target")
        .arg("add")
        .arg("--toolchain")
        .arg(&toolchain)
        .arg(WASM_TARGET)
        .status();
    if !status.is_ok_and(|s| s.success()) {
        println!("cargo:warning=`rustup target add {WASM_TARGET}` failed");
    }
}

/// Runs the nested `cargo build` with a cleaned environment.
fn build_plugins(plugins: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(plugins)
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(WASM_TARGET)
        .arg("--target-dir")
        .arg(target_dir);
    for var in REMOVED_VARS {
        cmd.env_remove(var);
    }
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if REMOVED_PREFIXES.iter().any(|p| key.starts_with(p)) {
            cmd.env_remove(key.as_ref());
        }
    }
    let output = match cmd.output() {
        Ok(output) => output,
        Err(e) => panic!("could not run cargo to build the plugins: {e}"),
    };
    if !output.status.success() {
        panic!(
            "building the plugins in {} failed ({}):\n{}{}",
            plugins.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
    }
}

/// Copies built components into `dest` under the same names, touching a file
/// only when its content changed so downstream mtimes stay stable.
fn publish(built: &Path, dest: &Path, plugins: &[&str]) {
    if let Err(e) = fs::create_dir_all(dest) {
        panic!("could not create {}: {e}", dest.display());
    }
    for name in plugins {
        let from = built.join(format!("{name}.wasm"));
        let to = dest.join(format!("{name}.wasm"));
        let bytes = match fs::read(&from) {
            Ok(bytes) => bytes,
            Err(e) => panic!("plugin {} was not built: {e}", from.display()),
        };
        if fs::read(&to).is_ok_and(|old| old == bytes) {
            continue;
        }
        if let Err(e) = fs::write(&to, &bytes) {
            panic!("could not write {}: {e}", to.display());
        }
    }
}

/// Writes `OUT_DIR/scaffold_files.rs`: every file of the SDK crate and of the
/// WIT package, plus the plugins' lock file, as `include_str!` entries keyed by
/// the path `plugin new` gives them in a new plugin's `switchyard-policy/`
/// directory.
fn embed_scaffold(root: &Path) {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let sdk = root.join("plugins").join("sdk");
    collect(&sdk, &sdk, &mut files);
    let wit = root.join("wit");
    let mut wit_files = Vec::new();
    collect(&wit, &wit, &mut wit_files);
    files.extend(
        wit_files
            .into_iter()
            .map(|(rel, path)| (format!("wit/{rel}"), path)),
    );
    files.push(("Cargo.lock".into(), root.join("plugins").join("Cargo.lock")));
    files.sort();
    let mut out = String::from("&[\n");
    for (rel, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        out.push_str(&format!(
            "    ({rel:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    out.push_str("]\n");
    let dest =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it")).join("scaffold_files.rs");
    if let Err(e) = fs::write(&dest, out) {
        panic!("could not write {}: {e}", dest.display());
    }
}

/// Files under `dir` (skipping build output), with their path relative to
/// `base` written with `/`.
fn collect(base: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        panic!("cannot read {}", dir.display());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !path
                .file_name()
                .is_some_and(|n| NOT_SOURCES.iter().any(|skip| n == *skip))
            {
                collect(base, &path, out);
            }
        } else if let Ok(rel) = path.strip_prefix(base) {
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push((rel.join("/"), path));
        }
    }
}
