//! A plug: exports `warden:test-programs/shout` (upper case and a `!`).
wit_bindgen::generate!({ world: "shout-mock", generate_all });

struct Shout;
export!(Shout);

impl exports::warden::test_programs::shout::Guest for Shout {
    fn shout(text: String) -> String {
        format!("{}!", text.to_uppercase())
    }
}

fn main() {}
