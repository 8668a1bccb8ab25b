//! Spins. Usage: busy ITERATIONS | busy forever
fn main() {
    let arg = std::env::args().nth(1).expect("usage: busy ITERATIONS|forever");
    let limit = if arg == "forever" { u64::MAX } else { arg.parse().expect("a number") };
    let mut x = 0u64;
    let mut i = 0u64;
    while i < limit {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        i += 1;
    }
    println!("done after {i} iterations");
}
