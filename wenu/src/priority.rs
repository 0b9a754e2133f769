//! Who gets the CPU when there is not enough: the edge (its own threads) and
//! the stream consumers run at normal priority; dashboard queries run on
//! threads of their own at a lower one, so that fifty dashboards hammering
//! the API take the CPU that is left, never the devices'. Idle CPU goes to
//! whoever wants it: a low priority only loses when threads compete.

use std::sync::OnceLock;

use anyhow::anyhow;
use tokio::runtime::Runtime;

/// The query threads' `nice`, the lowest: the kernel gives such a thread
/// about 1/70 of the CPU a competing thread at 0 gets. At 10 (about a tenth)
/// 50 dashboards took 13 % of the devices' acknowledgements on 2 cores
/// (`wenu bench api`); at 19, 6 %.
const QUERY_NICENESS: i32 = 19;

/// The runtime of the HTTP API: one worker per core (and its blocking pool),
/// all at [`QUERY_NICENESS`]; made once per process and shared by every
/// server it starts.
pub fn query_runtime() -> anyhow::Result<&'static Runtime> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    let built = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("wenu-http")
            .on_thread_start(|| lower_this_threads_priority(QUERY_NICENESS))
            .enable_all()
            .build()
            .map_err(|err| err.to_string())
    });
    built.as_ref().map_err(|err| anyhow!("starting the HTTP threads: {err}"))
}

fn lower_this_threads_priority(niceness: i32) {
    // SAFETY: gettid and setpriority take plain integers and touch no memory
    // of ours; on Linux, PRIO_PROCESS with a thread id sets that thread only.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, niceness) };
    if result != 0 {
        // Lowering one's own priority needs no privilege; a sandbox may still refuse.
        tracing::debug!(error = %std::io::Error::last_os_error(), "thread priority unchanged");
    }
}
