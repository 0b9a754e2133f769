//! Named fault-injection points, for the tests that prove crash safety and
//! isolation against the real binary. Inert unless the `WENU_FAILPOINTS`
//! environment variable names them: `WENU_FAILPOINTS=alarms.after_record=abort`
//! makes the process die there as `kill -9` would; `=stall` makes the task
//! that reaches it wait forever; `=panic-once` panics the first task that
//! reaches it (a bug in a stage), and lets every later one through.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug)]
enum Action {
    Abort,
    Stall,
    PanicOnce(AtomicBool),
}

fn configured() -> &'static HashMap<String, Action> {
    static POINTS: OnceLock<HashMap<String, Action>> = OnceLock::new();
    POINTS.get_or_init(|| {
        let spec = std::env::var("WENU_FAILPOINTS").unwrap_or_default();
        spec.split(',')
            .filter_map(|entry| entry.split_once('='))
            .filter_map(|(name, action)| match action.trim() {
                "abort" => Some((name.trim().to_owned(), Action::Abort)),
                "stall" => Some((name.trim().to_owned(), Action::Stall)),
                "panic-once" => Some((name.trim().to_owned(), Action::PanicOnce(AtomicBool::new(false)))),
                _ => None,
            })
            .collect()
    })
}

/// Does what `WENU_FAILPOINTS` says for `name`, if anything.
pub async fn hit(name: &str) {
    match configured().get(name) {
        None => {}
        Some(Action::Abort) => abort(name),
        Some(Action::Stall) => {
            eprintln!("failpoint {name}: stalling this task");
            std::future::pending::<()>().await
        }
        Some(Action::PanicOnce(fired)) => panic_once(name, fired),
    }
}

/// The same, for code that is not async (a stall parks the thread).
pub fn hit_blocking(name: &str) {
    match configured().get(name) {
        None => {}
        Some(Action::Abort) => abort(name),
        Some(Action::Stall) => {
            eprintln!("failpoint {name}: stalling this thread");
            loop {
                std::thread::park();
            }
        }
        Some(Action::PanicOnce(fired)) => panic_once(name, fired),
    }
}

fn panic_once(name: &str, fired: &AtomicBool) {
    if !fired.swap(true, Ordering::SeqCst) {
        panic!("failpoint {name}: panicking once");
    }
}

fn abort(name: &str) -> ! {
    eprintln!("failpoint {name}: aborting");
    std::process::abort()
}
