//! A progress bar on stderr for long steps: shown only when stderr is a
//! terminal and only once the step has run for [`SHOW_AFTER`], so quick
//! runs and scripts see nothing.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long a step runs before its bar appears.
pub const SHOW_AFTER: Duration = Duration::from_secs(1);

/// How often the bar is refreshed.
const TICK: Duration = Duration::from_millis(100);

/// Runs `work`, showing `counter` (bytes done, of `total` if known) as a bar
/// labelled `label` if the step is slow and stderr is a terminal.
pub fn with_progress<T: Send>(
    label: &str,
    total: Option<u64>,
    counter: &AtomicU64,
    work: impl FnOnce() -> T + Send,
) -> T {
    let template = if total.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{msg} {spinner} {bytes} {bytes_per_sec}"
    };
    show(label, total, counter, template, work)
}

/// As [`with_progress`], counting items (bundles) of `total` instead of bytes.
pub fn with_count_progress<T: Send>(
    label: &str,
    total: u64,
    counter: &AtomicU64,
    work: impl FnOnce() -> T + Send,
) -> T {
    show(
        label,
        Some(total),
        counter,
        "{msg} [{bar:30}] {pos}/{len} eta {eta}",
        work,
    )
}

fn show<T: Send>(
    label: &str,
    total: Option<u64>,
    counter: &AtomicU64,
    template: &str,
    work: impl FnOnce() -> T + Send,
) -> T {
    if !std::io::stderr().is_terminal() {
        return work();
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let done = &done;
        s.spawn(move || {
            let start = Instant::now();
            let mut bar: Option<ProgressBar> = None;
            while !done.load(Ordering::Acquire) {
                std::thread::sleep(TICK);
                if bar.is_none() && start.elapsed() >= SHOW_AFTER {
                    let b = match total {
                        Some(t) => {
                            ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr())
                        }
                        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
                    };
                    if let Ok(style) = ProgressStyle::with_template(template) {
                        b.set_style(style.progress_chars("=> "));
                    }
                    b.set_message(label.to_string());
                    bar = Some(b);
                }
                if let Some(b) = &bar {
                    b.set_position(counter.load(Ordering::Relaxed));
                }
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
        });
        let out = work();
        done.store(true, Ordering::Release);
        out
    })
}
