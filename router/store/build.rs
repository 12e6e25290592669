//! `sqlx::migrate!` embeds `migrations/` at compile time: rebuild when a migration changes.
#![allow(clippy::print_stdout)]

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
