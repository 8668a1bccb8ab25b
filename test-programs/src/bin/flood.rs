//! Writes 1 KiB lines to stdout (or stderr with `flood stderr`) as fast as
//! it can: forever, or LINES of them (`flood stdout LINES`). Each line ends
//! with its number, so a test can see how much got through.
use std::io::Write;

fn main() {
    let mut args = std::env::args().skip(1);
    let to_stderr = args.next().as_deref() == Some("stderr");
    let lines: u64 = args.next().map_or(u64::MAX, |n| n.parse().expect("LINES"));
    let line = [b'x'; 1016];
    let mut out: Box<dyn Write> = if to_stderr {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    for i in 0..lines {
        if out.write_all(&line).and_then(|()| writeln!(out, " {i:06}")).is_err() {
            // A closed pipe: stop as a native program would.
            std::process::exit(3);
        }
    }
}
