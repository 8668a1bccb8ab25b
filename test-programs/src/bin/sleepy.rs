//! Sleeps in a host call. Usage: sleepy MILLISECONDS
fn main() {
    let ms: u64 = std::env::args().nth(1).expect("usage: sleepy MS").parse().expect("a number");
    std::thread::sleep(std::time::Duration::from_millis(ms));
    println!("woke after {ms}ms");
}
