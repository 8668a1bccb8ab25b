//! A WASI 0.2 command that imports `warden:test-programs/greeter`, which
//! nothing but a plug provides: prints `greet(ARG)` for each argument.
wit_bindgen::generate!({ world: "greet-cli", generate_all });

fn main() {
    for name in std::env::args().skip(1) {
        println!("{}", warden::test_programs::greeter::greet(&name));
    }
}
