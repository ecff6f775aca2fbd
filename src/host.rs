//! What the host offers this process, read where the library must refuse work before allocating
//! for it (a file larger than memory, a trial that cannot fit).

/// Bytes the kernel reports as available for new allocations without swapping (Linux
/// `MemAvailable` in `/proc/meminfo`), or `None` where that cannot be read.
pub fn available_memory() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = text
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<usize>()
        .ok()?;
    Some(kib.saturating_mul(1024))
}
