//! Traps with `unreachable` inside a named function, so the backtrace has
//! something to name.
#[inline(never)]
fn guest_gives_up(depth: u32) -> u32 {
    if depth == 0 {
        core::arch::wasm32::unreachable()
    }
    depth + guest_gives_up(depth - 1)
}

fn main() {
    println!("about to trap");
    let n = guest_gives_up(std::hint::black_box(2));
    println!("not reached {n}");
}
