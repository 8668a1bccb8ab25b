//! Prints one line: the start-up benchmark measures time to its first byte.
fn main() {
    println!("hello from a warden guest");
}
