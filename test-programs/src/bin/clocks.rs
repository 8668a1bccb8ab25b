//! Prints what the program's clocks and random sources read, one line
//! each, for the tests of Warden's virtual time and randomness:
//!
//! ```text
//! wall SECS.NANOS         the wall clock (std's SystemTime)
//! mono NANOS              the monotonic clock, raw
//! random HEX              16 bytes of secure random
//! insecure HEX            16 insecure random bytes (WASI 0.2 only)
//! seed HEX                the insecure seed (WASI 0.2 only)
//! hash HEX                a std HashMap's hash of a fixed word (its keys are random)
//! slept-ms N              the monotonic clock across a 30 ms sleep
//! wall-after SECS.NANOS   the wall clock after it
//! ```
use std::hash::BuildHasher;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn wall() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(feature = "p1")]
fn mono() -> u64 {
    // SAFETY: a plain WASI call with no pointers.
    unsafe { wasi_p1::clock_time_get(wasi_p1::CLOCKID_MONOTONIC, 1) }.unwrap()
}

#[cfg(feature = "p1")]
fn random() -> Vec<u8> {
    let mut buf = [0u8; 16];
    // SAFETY: the buffer is 16 bytes long.
    unsafe { wasi_p1::random_get(buf.as_mut_ptr(), buf.len()) }.unwrap();
    buf.to_vec()
}

#[cfg(all(feature = "p2", not(feature = "p1")))]
fn mono() -> u64 {
    wasi::clocks::monotonic_clock::now()
}

#[cfg(all(feature = "p2", not(feature = "p1")))]
fn random() -> Vec<u8> {
    wasi::random::random::get_random_bytes(16)
}

fn main() {
    println!("wall {}", wall());
    println!("mono {}", mono());
    println!("random {}", hex(&random()));
    #[cfg(all(feature = "p2", not(feature = "p1")))]
    {
        println!(
            "insecure {}",
            hex(&wasi::random::insecure::get_insecure_random_bytes(16))
        );
        let (a, b) = wasi::random::insecure_seed::insecure_seed();
        println!("seed {a:016x}{b:016x}");
    }
    let hash = std::collections::hash_map::RandomState::new().hash_one("warden");
    println!("hash {hash:016x}");
    let before = mono();
    std::thread::sleep(Duration::from_millis(30));
    println!("slept-ms {}", (mono() - before) / 1_000_000);
    println!("wall-after {}", wall());
}
