//! A fixed number of calls through one variant, for counting instructions under
//! `valgrind --tool=callgrind`. Instruction counts, unlike times, do not move with the
//! load of a shared machine. `scripts/bench_report.py` runs this twice per variant
//! (with few and with many calls) and divides the difference by the extra calls, which
//! cancels the set-up cost.
//!
//! ```text
//! cargo bench --bench instructions -- <variant> <calls>
//! ```
//!
//! Without arguments (as `cargo bench` runs it), it does nothing.

#[allow(dead_code)]
mod common;

use std::hint::black_box;

use common::*;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (Some(variant), Some(calls)) = (args.first(), args.get(1).and_then(|n| n.parse::<usize>().ok()))
    else {
        return;
    };
    let rt = runtime();
    let _context = rt.enter();
    match variant.as_str() {
        "bare" => run(&mut Answer, API_URI, calls),
        "static_header" => run(&mut static_header(), API_URI, calls),
        "oauth2" => run(&mut warm_oauth2(&rt), API_URI, calls),
        "oauth2_no_retry" => run(
            &mut warm_oauth2_layer(&rt, oauth2_layer().retry_dead_tokens(false)),
            API_URI,
            calls,
        ),
        "floor" => run(&mut common::floor::Floor::new(Answer, false), API_URI, calls),
        "floor_retry" => run(&mut common::floor::Floor::new(Answer, true), API_URI, calls),
        "bare_cloned" => run(&mut ClonePerCall(Answer), API_URI, calls),
        "static_header_cloned" => run(&mut ClonePerCall(static_header()), API_URI, calls),
        "oauth2_cloned" => run(&mut ClonePerCall(warm_oauth2(&rt)), API_URI, calls),
        "bare_foreign" => run(&mut Answer, FOREIGN_URI, calls),
        "oauth2_foreign" => run(&mut warm_oauth2(&rt), FOREIGN_URI, calls),
        other => {
            eprintln!("unknown variant {other}");
            std::process::exit(2);
        }
    }
}

fn run<S>(svc: &mut S, uri: &str, calls: usize)
where
    S: tower::Service<http::Request<()>>,
    S::Error: std::fmt::Debug,
{
    for _ in 0..calls {
        black_box(drive(svc, request(uri)));
    }
}
