//! Reads the built-in `wasi:config/store`: prints `KEY=VALUE` (or
//! `KEY unset`) for each argument, then `all N` with the number of values.
wit_bindgen::generate!({ world: "config-cli", generate_all });

use crate::wasi::config::store;

fn main() {
    for key in std::env::args().skip(1) {
        match store::get(&key) {
            Ok(Some(v)) => println!("{key}={v}"),
            Ok(None) => println!("{key} unset"),
            Err(e) => println!("{key} error {e:?}"),
        }
    }
    match store::get_all() {
        Ok(all) => println!("all {}", all.len()),
        Err(e) => println!("all error {e:?}"),
    }
}
