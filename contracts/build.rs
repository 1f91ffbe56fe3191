//! The bindings (`src/bindings.rs`, `src/artifacts.rs`) are generated from `artifacts/*.json` at compile
//! time; cargo does not see those files otherwise, so a rebuilt artifact would leave stale bindings.
fn main() {
    println!("cargo:rerun-if-changed=artifacts");
}
