//! What went wrong inside a guest, as one line for people: a Python or
//! JavaScript exception or a Rust panic from the guest's stderr, a short
//! demangled backtrace, wasmtime's messages on one line. Pure text; the
//! sandbox calls these when it classifies a failed call.

/// The guest's own account of a failure: a Python exception (`Type:
/// message`), a JavaScript exception's message, a panic message (`panicked
/// at FILE: MESSAGE`) or else its last line on stderr, one line, bounded.
pub(super) fn guest_complaint(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    if let Some(exception) = python_exception(&text).or_else(|| javascript_exception(&text)) {
        return Some(truncate(exception, 300));
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    let said = match lines.iter().rposition(|l| l.contains("panicked at")) {
        Some(at) => lines[at..].join(" "),
        None => (*lines.last()?).to_string(),
    };
    Some(truncate(said, 300))
}

/// The exception of the last Python traceback on stderr, e.g.
/// `RuntimeError: message`. A componentize-py guest prints the traceback of
/// an uncaught exception and then panics with a generic message ("Python
/// function threw an unexpected exception"), so the exception is what says
/// what went wrong. The traceback's frames are indented; the exception line
/// is the first one that is not, and its message may go on until a blank
/// line or the panic.
fn python_exception(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| l.trim_end() == "Traceback (most recent call last):")?;
    let mut said: Vec<&str> = Vec::new();
    for line in &lines[start + 1..] {
        if line.trim().is_empty() || line.starts_with("thread '") {
            if said.is_empty() {
                continue;
            }
            break;
        }
        if said.is_empty() && line.starts_with(char::is_whitespace) {
            continue; // a frame, its source line or a `^^^` marker
        }
        said.push(line.trim());
    }
    (!said.is_empty()).then(|| said.join(" "))
}

/// The last line of an uncaught JavaScript exception's message. A
/// componentize-js (StarlingMonkey) guest prints the exception (an Error's
/// message, else the thrown value's source form), for an Error `Stack:` and
/// indented frames, and then aborts with a generic line; the line before the
/// stack, or else before that abort line, says what went wrong.
fn javascript_exception(text: &str) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    let mut end = lines
        .iter()
        .rposition(|l| *l == "Redirecting call to abort() to mozalloc_abort")?;
    if let Some(stack) = lines[..end].iter().rposition(|l| *l == "Stack:")
        && lines[stack + 1..end]
            .iter()
            .all(|l| l.starts_with(char::is_whitespace))
    {
        end = stack;
    }
    let said = lines[..end].last()?.trim();
    (!said.is_empty()).then(|| said.to_string())
}

/// wasmtime's messages may span lines (wasmparser pretty-prints a bad magic
/// number as a list); an error reaches the user as one line.
pub(super) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        text.truncate(text.floor_char_boundary(max));
        text.push_str("...");
    }
    text
}

/// The guest's own frames, innermost first, demangled, with the panic and
/// abort machinery of the standard library left out and recursion folded.
pub(super) fn short_backtrace(bt: &wasmtime::WasmBacktrace) -> String {
    const MACHINERY: [&str; 6] = [
        "std::",
        "core::",
        "__rustc::",
        "__rust",
        "abort",
        "rust_panic",
    ];
    let mut frames: Vec<(String, usize)> = Vec::new();
    for name in bt.frames().iter().filter_map(|f| f.func_name()) {
        let name = format!("{:#}", rustc_demangle::demangle(name));
        if MACHINERY.iter().any(|m| name.starts_with(m)) {
            continue;
        }
        match frames.last_mut() {
            Some((last, n)) if *last == name => *n += 1,
            _ => frames.push((name, 1)),
        }
    }
    let shown: Vec<String> = frames
        .iter()
        .take(5)
        .map(|(name, n)| {
            if *n > 1 {
                format!("{name} x{n}")
            } else {
                name.clone()
            }
        })
        .collect();
    shown.join(" <- ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_python_traceback_gives_its_exception() {
        let stderr = "Traceback (most recent call last):\n  File \"app.py\", line 3, in boom\n    raise RuntimeError(m)\nRuntimeError: it broke\n\nthread '<unnamed>' panicked at src/lib.rs:1:1:\nPython function threw an unexpected exception\n";
        assert_eq!(
            guest_complaint(stderr.as_bytes()).as_deref(),
            Some("RuntimeError: it broke")
        );
    }

    #[test]
    fn a_javascript_exception_gives_its_message_not_its_stack() {
        let stderr = "Error: no such user\nStack:\n  boom@app.js:3:9\nRedirecting call to abort() to mozalloc_abort\n";
        assert_eq!(
            guest_complaint(stderr.as_bytes()).as_deref(),
            Some("Error: no such user")
        );
    }

    #[test]
    fn a_rust_panic_gives_its_message_and_else_the_last_line() {
        let panic = "\nthread '<unnamed>' panicked at src/lib.rs:9:5:\nbad input\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            guest_complaint(panic.as_bytes()).as_deref(),
            Some("thread '<unnamed>' panicked at src/lib.rs:9:5: bad input")
        );
        assert_eq!(
            guest_complaint(b"first\nlast words\n").as_deref(),
            Some("last words")
        );
        assert_eq!(guest_complaint(b"\n \n"), None);
    }

    #[test]
    fn complaints_are_bounded_and_cut_at_a_char_boundary() {
        let long = "é".repeat(400);
        let said = guest_complaint(long.as_bytes()).unwrap();
        assert!(said.len() <= 303, "{}", said.len());
        assert!(said.ends_with("..."));
        assert_eq!(one_line("a\n  b\tc"), "a b c");
    }
}
