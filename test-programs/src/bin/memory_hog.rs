//! Grows linear memory one 64 KiB page at a time until it has PAGES pages in
//! total or memory.grow fails, and says which. Usage: memory_hog PAGES
fn main() {
    let target: usize = std::env::args()
        .nth(1)
        .expect("usage: memory_hog PAGES")
        .parse()
        .expect("PAGES is a number");
    loop {
        let now = core::arch::wasm32::memory_size(0);
        if now >= target {
            println!("grew to {now} pages");
            return;
        }
        if core::arch::wasm32::memory_grow(0, 1) == usize::MAX {
            println!("memory.grow refused at {now} pages");
            // The guest carries on: a refused growth is an error it handles.
            let mut v: Vec<u8> = Vec::new();
            let reserve = v.try_reserve_exact(target * 65536);
            println!("try_reserve: {}", if reserve.is_err() { "refused" } else { "ok" });
            return;
        }
    }
}
