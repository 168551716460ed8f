//! The one progress helper: a spinner while the source is read and a bar while
//! operations are sent, on stderr and only when it is a terminal.

use crate::engine::{Progress, PushProgress};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

pub struct Bars {
    tty: bool,
    current: Mutex<Option<ProgressBar>>,
}

impl Bars {
    pub fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            current: Mutex::new(None),
        }
    }

    fn with(&self, f: impl FnOnce(&mut Option<ProgressBar>)) {
        if self.tty {
            f(&mut self.current.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }

    fn finish(&self) {
        self.with(|c| {
            if let Some(pb) = c.take() {
                pb.finish_and_clear();
            }
        });
    }
}

fn styled(pb: ProgressBar, template: &str) -> ProgressBar {
    pb.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb
}

impl PushProgress for Bars {
    fn started(&self, total: usize) {
        if total == 0 {
            return;
        }
        self.with(|c| {
            *c = Some(styled(
                ProgressBar::new(total as u64),
                "{bar:40} {pos}/{len} operations ({per_sec}, eta {eta})",
            ));
        });
    }
    fn finished_one(&self) {
        self.with(|c| {
            if let Some(pb) = c {
                pb.inc(1);
            }
        });
    }
    fn done(&self) {
        self.finish();
    }
}

impl Progress for Bars {
    fn reading(&self, entries: usize) {
        self.with(|c| {
            let pb = c.get_or_insert_with(|| {
                let pb = styled(
                    ProgressBar::new_spinner(),
                    "{spinner} {msg} {pos} entries ({per_sec})",
                );
                pb.set_message("reading source:");
                pb.enable_steady_tick(Duration::from_millis(120));
                pb
            });
            pb.set_position(entries as u64);
        });
    }
    fn read_done(&self) {
        self.finish();
    }
}
