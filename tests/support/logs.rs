//! Log output captured in memory, for the tests that prove no secret is ever logged.
//!
//! One process-wide subscriber writes each event into the capture of the thread that
//! logged it, if that thread is capturing. A subscriber set per thread instead
//! (`tracing::subscriber::set_default`) misses events now and then when other tests run
//! alongside: their threads register callsites, and cache an interest, without it.

use std::{
    cell::RefCell,
    io::Write,
    sync::{Arc, Mutex, Once},
};

use tracing::Level;
use tracing_subscriber::{filter::dynamic_filter_fn, layer::SubscriberExt, Layer};

thread_local! {
    static CAPTURING: RefCell<Option<(Captured, Level)>> = const { RefCell::new(None) };
}

/// What one thread logged while it was capturing.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

/// Stops the capture of this thread when dropped.
pub struct Capturing(());

impl Drop for Capturing {
    fn drop(&mut self) {
        CAPTURING.with(|c| c.borrow_mut().take());
    }
}

/// Writes into the capture of the thread that logs.
struct ThisThread;

impl Write for ThisThread {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURING.with(|c| {
            if let Some((captured, _)) = &*c.borrow() {
                captured.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything logged at any level while the guard lives, in the test's thread (and so
    /// by every task of a current-thread runtime).
    pub fn install() -> (Self, Capturing) {
        Self::install_at(Level::TRACE)
    }

    /// What is logged at `level` or above while the guard lives, in the test's thread.
    pub fn install_at(level: Level) -> (Self, Capturing) {
        static SUBSCRIBER: Once = Once::new();
        SUBSCRIBER.call_once(|| {
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(|| ThisThread)
                // Dynamic: asked for every event. A `filter_fn` answer is cached per
                // callsite, from the thread that reached it first, and a callsite first
                // reached by a test that was not capturing would then never be captured.
                .with_filter(dynamic_filter_fn(|event, _| {
                    CAPTURING.with(|c| {
                        c.borrow()
                            .as_ref()
                            .is_some_and(|(_, level)| event.level() <= level)
                    })
                }));
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).unwrap();
        });
        let captured = Captured::default();
        CAPTURING.with(|c| *c.borrow_mut() = Some((captured.clone(), level)));
        (captured, Capturing(()))
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}
