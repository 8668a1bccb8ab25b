//! A plug: exports `warden:test-programs/greeter` with a canned answer.
wit_bindgen::generate!({ world: "greeter-mock", generate_all });

struct Mock;
export!(Mock);

impl exports::warden::test_programs::greeter::Guest for Mock {
    fn greet(name: String) -> String {
        format!("hello, {name} (mock)")
    }
}

fn main() {}
