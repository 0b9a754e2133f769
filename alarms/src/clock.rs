//! The alarms' clock.

/// Wall-clock milliseconds that follow tokio's clock, so tests with paused
/// time drive the silence timers.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_at_start: i64,
    started: tokio::time::Instant,
}

impl Clock {
    pub fn start() -> Self {
        Clock { wall_at_start: wenu_core::clock::now_ms(), started: tokio::time::Instant::now() }
    }

    pub fn now_ms(&self) -> i64 {
        self.wall_at_start + self.started.elapsed().as_millis() as i64
    }
}
