//! A bridge plug: exports `warden:test-programs/greeter` over
//! `warden:test-programs/shout`, which another plug must provide.
wit_bindgen::generate!({ world: "greeter-loud", generate_all });

struct Loud;
export!(Loud);

impl exports::warden::test_programs::greeter::Guest for Loud {
    fn greet(name: String) -> String {
        warden::test_programs::shout::shout(&format!("hello, {name}"))
    }
}

fn main() {}
