//! Tells the test suite whether PostgreSQL is there to test against: with
//! HERALD_TEST_POSTGRES_URL set at build time, `cfg(herald_pg)` is on and every
//! `…::postgres` test runs; without it they are reported as ignored, not as passed (a
//! green run must not claim PostgreSQL coverage it did not have).
fn main() {
    println!("cargo:rustc-check-cfg=cfg(herald_pg)");
    println!("cargo:rerun-if-env-changed=HERALD_TEST_POSTGRES_URL");
    if std::env::var("HERALD_TEST_POSTGRES_URL").is_ok_and(|v| !v.is_empty()) {
        println!("cargo:rustc-cfg=herald_pg");
    }
}
