//! Which of Weir's own threads yield to ingest. Work that can wait (a
//! plugin call past its first millisecond of CPU, forwarding) runs on
//! threads at nice 10, so it takes the CPU that requests leave over instead
//! of queueing them.

/// Not 19: at 19 (weight 15 against 1024) a legitimate 5 ms plugin on a
/// saturated machine would get ~1.5 % of a core and end at its 200 ms
/// wall-clock cap; at 10 (weight 110) it gets ~10 % and finishes in ~50 ms,
/// while a hostile one still takes at most ~10 % from requests.
pub(crate) const BACKGROUND_NICE: libc::c_int = 10;

/// Lowers the calling thread's priority to [`BACKGROUND_NICE`] (on Linux
/// `setpriority` with who = 0 applies to the calling thread only); for a
/// runtime's `on_thread_start`, so its blocking threads are lowered too.
pub(crate) fn background_thread() {
    // SAFETY: setpriority takes plain integers; failure only leaves the
    // thread at normal priority.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE) };
    if rc != 0 {
        let name = std::thread::current().name().unwrap_or("a background thread").to_string();
        tracing::warn!(error = %std::io::Error::last_os_error(), thread = name, "cannot lower a background thread's priority");
    }
}

/// A runtime of one worker thread (and its blocking threads) at background
/// priority; shut down without waiting when dropped, which an async context
/// requires of a runtime.
pub(crate) struct BackgroundRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl BackgroundRuntime {
    pub(crate) fn start(name: &str, workers: usize) -> std::io::Result<BackgroundRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(name)
            .on_thread_start(background_thread)
            .enable_all()
            .build()?;
        Ok(BackgroundRuntime { runtime: Some(runtime) })
    }

    pub(crate) fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.runtime.as_ref().map(|r| r.handle())
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(r) = self.runtime.take() {
            r.shutdown_background();
        }
    }
}
