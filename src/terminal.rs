//! The one line a manual run redraws in place on a terminal (the progress line), and everything
//! else written around it: a narration line on stdout or a log line on stderr erases the drawn
//! line first, so nothing ends up glued to it; the line is redrawn at its next tick. A leaf.
//!
//! Drawing and erasing happen with stdout locked, so a line is never half drawn when another is
//! written; when stdout is not a terminal nothing is ever drawn and every function here writes
//! exactly what it is given.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// "Carriage return, erase to the end of the line."
const ERASE: &str = "\r\x1b[K";

/// Whether a line is drawn on the terminal now (changed only with stdout locked).
static DRAWN: AtomicBool = AtomicBool::new(false);

/// Draws `line` in place of the one drawn before (the caller checked that stdout is a terminal).
pub fn draw(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "\r{line}\x1b[K");
    let _ = out.flush();
    DRAWN.store(true, Ordering::SeqCst);
}

/// Erases the drawn line, if any.
pub fn erase() {
    let mut out = std::io::stdout().lock();
    if DRAWN.swap(false, Ordering::SeqCst) {
        let _ = write!(out, "{ERASE}");
        let _ = out.flush();
    }
}

/// `println!` that erases the drawn line first.
pub fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let erase = if DRAWN.swap(false, Ordering::SeqCst) { ERASE } else { "" };
    let _ = writeln!(out, "{erase}{line}");
    let _ = out.flush();
}

/// Stderr for the log: a log line erases the drawn line first when both share the terminal.
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Locked while writing, so the line is not redrawn in the middle of the log line.
        let _out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        if DRAWN.load(Ordering::SeqCst) && err.is_terminal() {
            DRAWN.store(false, Ordering::SeqCst);
            err.write_all(ERASE.as_bytes())?;
        }
        err.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
