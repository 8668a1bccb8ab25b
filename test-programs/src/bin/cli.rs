//! Prints its arguments and environment, then exits with the code given by
//! an `exit=N` argument (0 otherwise).
fn main() {
    let args: Vec<String> = std::env::args().collect();
    for (i, a) in args.iter().enumerate() {
        println!("arg[{i}]={a}");
    }
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.sort();
    println!("env count={}", env.len());
    for (k, v) in &env {
        println!("env {k}={v}");
    }
    let code = args
        .iter()
        .find_map(|a| a.strip_prefix("exit="))
        .map(|c| c.parse::<i32>().expect("exit=N takes a number"))
        .unwrap_or(0);
    std::process::exit(code);
}
