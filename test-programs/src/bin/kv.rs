//! Uses the built-in `wasi:keyvalue` (bucket ""), one step per argument,
//! printing one line each:
//!   set:KEY=VALUE   `ok` or the error
//!   get:KEY         the value, or `none`
//!   incr:KEY        the counter after adding 1
//!   list            the keys, comma-separated
//!   fill:N          set N-byte values under fill0, fill1, ... until a
//!                   write fails: `full after K` and the error, or `room`
//!                   after 10000
wit_bindgen::generate!({ world: "keyvalue-cli", generate_all });

use crate::wasi::keyvalue::{atomics, store};

fn main() {
    let bucket = store::open("").expect("open");
    for step in std::env::args().skip(1) {
        let (verb, arg) = step.split_once(':').unwrap_or((step.as_str(), ""));
        let line = match verb {
            "set" => {
                let (k, v) = arg.split_once('=').expect("set:KEY=VALUE");
                match bucket.set(k, v.as_bytes()) {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("{e:?}"),
                }
            }
            "get" => match bucket.get(arg) {
                Ok(Some(v)) => String::from_utf8_lossy(&v).into_owned(),
                Ok(None) => "none".to_string(),
                Err(e) => format!("{e:?}"),
            },
            "incr" => match atomics::increment(&bucket, arg, 1) {
                Ok(n) => n.to_string(),
                Err(e) => format!("{e:?}"),
            },
            "list" => match bucket.list_keys(None) {
                Ok(r) => r.keys.join(","),
                Err(e) => format!("{e:?}"),
            },
            "fill" => {
                let n: usize = arg.parse().expect("fill:N");
                let value = vec![b'x'; n];
                let mut line = "room".to_string();
                for i in 0..10_000 {
                    if let Err(e) = bucket.set(&format!("fill{i}"), &value) {
                        line = format!("full after {i}: {e:?}");
                        break;
                    }
                }
                line
            }
            _ => format!("unknown step {verb}"),
        };
        println!("{step}: {line}");
    }
}
