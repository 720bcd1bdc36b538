//! Property tests of the parsers that read what others write: the token endpoint's
//! answer, configured origins against request URIs, and authorization callbacks. (The
//! store's record format has its own, beside it in `store/proptests.rs`; the public
//! API's, `FileStore` loads, in `tests/properties.rs`.)
//!
//! Each property states what must hold for *any* input: no panic, no hang, typed errors
//! whose text holds no control character and no secret, and for the parts that carry
//! meaning, that they carry it exactly.
//!
//! A parser stuck in a loop cannot be interrupted from its own thread, so a hang is
//! bounded from outside: the first property to start also starts a watchdog thread,
//! which ends the test process with a failure after [`WATCHDOG`] (all of them together
//! take seconds), or after `PROPTEST_WATCHDOG_SECS` seconds when that is set (`0`: no
//! watchdog, for a long hunt with a raised `PROPTEST_CASES`).
//!
//! # Cases
//!
//! Every property runs `PROPTEST_CASES` cases when that variable is set, and otherwise a
//! default of its own, chosen so that all of them together take a few seconds in a
//! debug build on two cores. `PROPTEST_RNG_SEED=<u64>` replays a run. A failure found
//! this way is kept as a named regression test, not in a `proptest-regressions` file.
//!
//! # Boxed strategies
//!
//! Every strategy function returns a `BoxedStrategy`. Left as `impl Strategy`, the
//! nested combinator types made value trees that, in a debug build, used most of a test
//! thread's 2 MiB stack, and one more `prop_oneof!` arm overflowed it. Boxed, all the
//! properties run on 1 MiB.

use std::{sync::Once, time::Duration};

use proptest::{prelude::*, test_runner::Config};

mod callback;
mod origin;
mod token_response;

/// The configuration of one property: `default` cases unless `PROPTEST_CASES` says.
///
/// `ProptestConfig::with_cases` would ignore the variable (an explicit count wins over
/// the environment in proptest), so it is read here.
pub(crate) fn config(default: u32) -> Config {
    start_watchdog();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.trim().parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        // Failures become named tests; no files appear in the source tree.
        failure_persistence: None,
        ..Config::default()
    }
}

/// How long the properties of one test process may run before a hang is assumed.
const WATCHDOG: Duration = Duration::from_secs(300);

/// Starts, once per process, the thread that fails the run if the properties have not
/// finished within the bound (see the module documentation).
fn start_watchdog() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let limit = match std::env::var("PROPTEST_WATCHDOG_SECS") {
            Ok(secs) => match secs.trim().parse::<u64>() {
                Ok(0) => return,
                Ok(secs) => Duration::from_secs(secs),
                Err(_) => WATCHDOG,
            },
            Err(_) => WATCHDOG,
        };
        let spawned = std::thread::Builder::new()
            .name("proptest-watchdog".into())
            .spawn(move || {
                std::thread::sleep(limit);
                // Straight to the process's stderr: the test harness captures
                // `eprintln!` of threads a test spawned, and the capture dies with us.
                let message = format!(
                    "property tests still running after {} s: a parser hangs on some input \
                     (PROPTEST_WATCHDOG_SECS sets the bound)\n",
                    limit.as_secs()
                );
                let _ = std::io::Write::write_all(&mut std::io::stderr(), message.as_bytes());
                std::process::exit(101);
            });
        spawned.expect("spawning the property tests' watchdog");
    });
}

/// Strings a hostile server or user would send: control characters, CR LF, NUL, DEL,
/// non-ASCII, lookalikes of numbers, very long runs, and anything at all.
pub(crate) fn hostile_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => any::<String>(),
        2 => "[ -~]{0,40}",
        2 => "[\\x00-\\x1f\\x7f\\u{80}-\\u{9f} a-z]{1,20}",
        1 => Just("\r\nSet-Cookie: a=b".to_owned()),
        1 => Just("a\0b".to_owned()),
        1 => numberish(),
        1 => ("[a-z\\r\\n\\t]", 1000..9000usize).prop_map(|(c, n)| c.repeat(n)),
    ]
    .boxed()
}

/// Strings that look like numbers, or nearly: what a sloppy server puts in a numeric
/// field.
pub(crate) fn numberish() -> BoxedStrategy<String> {
    prop::sample::select(vec![
        "",
        " ",
        "NaN",
        "nan",
        "inf",
        "-inf",
        "Infinity",
        "1e309",
        "-1e309",
        "-0",
        "0x10",
        " 120 ",
        "3600",
        "-5",
        "1e-400",
        "18446744073709551616",
        "\u{feff}60",
        "٣٦٠٠",
        "1_000",
        "+60",
    ])
    .prop_map(str::to_owned)
    .boxed()
}
