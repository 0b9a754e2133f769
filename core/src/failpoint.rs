//! Named fault-injection points, for the tests that prove crash safety and
//! isolation against the real binary. Inert unless the `WENU_FAILPOINTS`
//! environment variable names them: `WENU_FAILPOINTS=alarms.after_record=abort`
//! makes the process die there as `kill -9` would; `=stall` makes the task
//! that reaches it wait forever.

use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Abort,
    Stall,
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
    }
}

fn abort(name: &str) -> ! {
    eprintln!("failpoint {name}: aborting");
    std::process::abort()
}
