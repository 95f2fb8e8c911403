//! The number of CPUs: how many threads the walker uses and the default for `jobs`.

/// The number of CPUs, asked once: the standard library reads cgroup files every time.
pub fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
