//! Exercises granted directories. Usage: fs RW_DIR RO_DIR
//! Writes and reads back a file in RW_DIR, reads RO_DIR/input.txt, tries to
//! write into RO_DIR, and tries to escape both with `..`. Prints one line per
//! step with the outcome (`ok` or the io::ErrorKind).
use std::fs;

fn outcome<T>(r: std::io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("{:?}", e.kind()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (rw, ro) = (&args[1], &args[2]);

    let out = format!("{rw}/written-by-guest.txt");
    println!("write rw: {}", outcome(fs::write(&out, "guest was here\n")));
    println!("read back rw: {}", match fs::read_to_string(&out) {
        Ok(s) => s.trim().to_string(),
        Err(e) => format!("{:?}", e.kind()),
    });
    println!("read ro: {}", match fs::read_to_string(format!("{ro}/input.txt")) {
        Ok(s) => s.trim().to_string(),
        Err(e) => format!("{:?}", e.kind()),
    });
    println!("write ro: {}", outcome(fs::write(format!("{ro}/input.txt"), "overwritten")));
    println!("create in ro: {}", outcome(fs::write(format!("{ro}/new.txt"), "x")));
    println!("mkdir in ro: {}", outcome(fs::create_dir(format!("{ro}/newdir"))));
    println!("remove in ro: {}", outcome(fs::remove_file(format!("{ro}/input.txt"))));
    println!("escape rw: {}", outcome(fs::read_to_string(format!("{rw}/../secret.txt"))));
    println!("escape ro: {}", outcome(fs::read_to_string(format!("{ro}/../../secret.txt"))));
    println!("absolute host path: {}", outcome(fs::read_dir("/etc")));
    // RW_DIR/up is a symlink the host made to RW_DIR/.. (outside the grant).
    println!("symlink escape: {}", outcome(fs::read_to_string(format!("{rw}/up/secret.txt"))));
}
