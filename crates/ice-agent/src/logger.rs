//! webrtc-ice logs through the `log` facade; this prints those records on
//! stderr (stdout carries only the JSON lines).

use std::io::Write;

struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{} {}: {}",
                record.level(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

pub fn init(level: log::LevelFilter) {
    // Only fails if a logger is already set, which nothing else does.
    let _ = log::set_logger(&Stderr);
    log::set_max_level(level);
}
