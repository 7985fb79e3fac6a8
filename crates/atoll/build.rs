//! Relink when the hot-function list changes: crates/atoll/link/cc-ordered (the linker
//! scripts/build.sh sets) reads it at link time, which cargo cannot see, so without this a
//! re-recorded list (scripts/order-functions.sh) would only take effect after some unrelated
//! change.
fn main() {
    println!("cargo:rerun-if-changed=link/hot-functions.txt");
    println!("cargo:rerun-if-changed=link/cc-ordered");
    println!("cargo:rerun-if-changed=link/hot-functions-extra.txt");
}
