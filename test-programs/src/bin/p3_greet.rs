//! A WASI 0.3 command (wasi:cli/run@0.3.0 through wit-bindgen) that
//! imports `warden:test-programs/greeter`: prints `greet(ARG)` for each
//! argument. With a 0.2 plug, it shows composition across the ABIs.
wit_bindgen::generate!({
    world: "p3-greet",
    features: ["clocks-timezone"],
    generate_all
});

struct Component;
export!(Component);

impl exports::wasi::cli::run::Guest for Component {
    async fn run() -> Result<(), ()> {
        for name in std::env::args().skip(1) {
            println!("{}", warden::test_programs::greeter::greet(&name));
        }
        Ok(())
    }
}

fn main() {
    unreachable!("the WASI 0.3 run export is the program")
}
