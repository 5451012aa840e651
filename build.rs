//! Tells the test suite what it can test against, so that a test without its outside
//! party is reported as ignored, never as passed (a green run must not claim coverage it
//! did not have):
//! - `cfg(herald_pg)`: HERALD_TEST_POSTGRES_URL was set at build time; every
//!   `…::postgres` test runs.
//! - `cfg(herald_browser)`: chromium and node are on the PATH and playwright-core is
//!   installed in tests/browser (`npm ci --prefix tests/browser`); the browser tests run.
//! - `cfg(herald_tools)`: the outside programs some tests check herald against are here:
//!   dkimpy (Debian's python3-dkim), OpenDKIM, openssl, Dovecot and Postfix (and its
//!   smtp-sink).
//!
//! HERALD_TEST_REQUIRE_TOOLS turns both on regardless, so that CI fails instead of ignoring
//! those tests when a tool is missing.
fn main() {
    println!("cargo:rustc-check-cfg=cfg(herald_pg)");
    println!("cargo:rustc-check-cfg=cfg(herald_browser)");
    println!("cargo:rustc-check-cfg=cfg(herald_tools)");
    println!("cargo:rerun-if-env-changed=HERALD_TEST_POSTGRES_URL");
    println!("cargo:rerun-if-env-changed=HERALD_TEST_REQUIRE_TOOLS");
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-changed=tests/browser/package-lock.json");
    println!("cargo:rerun-if-changed=tests/browser/node_modules");
    if std::env::var("HERALD_TEST_POSTGRES_URL").is_ok_and(|v| !v.is_empty()) {
        println!("cargo:rustc-cfg=herald_pg");
    }
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
    };
    let playwright =
        std::path::Path::new("tests/browser/node_modules/playwright-core/package.json").is_file();
    let required = std::env::var_os("HERALD_TEST_REQUIRE_TOOLS").is_some();
    if required || (on_path("chromium") && on_path("node") && playwright) {
        println!("cargo:rustc-cfg=herald_browser");
    }
    let dkimpy = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import dkim"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let installed = |path: &str| std::path::Path::new(path).is_file();
    if required
        || (dkimpy
            && on_path("openssl")
            && installed("/usr/sbin/opendkim")
            && installed("/usr/sbin/dovecot")
            && installed("/usr/sbin/smtp-sink")
            && installed("/usr/sbin/postfix"))
    {
        println!("cargo:rustc-cfg=herald_tools");
    }
}
