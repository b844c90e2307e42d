//! Rebuild when a migration is added or changed: `embed_migrations!` reads the
//! folder at compile time, and cargo would not notice a new file otherwise.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
