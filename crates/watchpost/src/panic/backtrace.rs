//! A backtrace trimmed to the frames that matter.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::fmt::Write as _;

use super::report::StackFrame;
use super::truncate;

/// Backtrace frames kept.
const FRAMES_MAX: usize = 25;
/// A frame's symbol cap in the text, in characters (async and generic code
/// has long ones).
const SYMBOL_MAX: usize = 200;
/// A frame's function cap in a [`StackFrame`], in characters: longer than
/// in the text, where a stack trace viewer has room for it.
const FUNCTION_MAX: usize = 1000;

/// A backtrace of the calling thread, trimmed (see [`kept`]): as text for
/// the alert's detail, and as frames for the [`PanicReport`].
///
/// [`PanicReport`]: super::PanicReport
#[derive(Debug, Default)]
pub(super) struct Captured {
    /// The trimmed backtrace as text, one frame per line with its `at` lines.
    pub(super) text: String,
    /// The same frames, innermost first.
    pub(super) frames: Vec<StackFrame>,
}

/// A backtrace of the calling thread, trimmed (see [`kept`]).
pub(super) fn capture() -> Captured {
    let backtrace = Backtrace::force_capture();
    if backtrace.status() != BacktraceStatus::Captured {
        return Captured {
            text: "unavailable on this platform".to_owned(),
            frames: Vec::new(),
        };
    }
    let mut text = String::new();
    let _ = write!(text, "{backtrace}");
    let frames = parse_frames(&text);
    let kept = kept(&frames);
    Captured {
        text: render(kept),
        frames: structured(kept),
    }
}

/// At most [`FRAMES_MAX`] frames as [`StackFrame`]s, innermost first.
fn structured(kept: &[Frame<'_>]) -> Vec<StackFrame> {
    kept.iter()
        .take(FRAMES_MAX)
        .map(|f| {
            let function = truncate(f.symbol, FUNCTION_MAX);
            StackFrame::parse(&function, f.at.first().copied())
        })
        .collect()
}

/// One frame of a printed [`Backtrace`]: the symbol and its `at` lines.
#[derive(Debug)]
struct Frame<'a> {
    symbol: &'a str,
    at: Vec<&'a str>,
}

fn parse_frames(text: &str) -> Vec<Frame<'_>> {
    let mut frames: Vec<Frame<'_>> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some((index, symbol)) = line.split_once(": ") {
            if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) {
                frames.push(Frame {
                    symbol: symbol.trim(),
                    at: Vec::new(),
                });
                continue;
            }
        }
        if let Some(frame) = frames.last_mut() {
            frame.at.push(line);
        }
    }
    frames
}

/// The standard library's, the panic machinery's and our own frames.
fn is_machinery(symbol: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "std::",
        "core::",
        "alloc::",
        "<std::",
        "<core::",
        "<alloc::",
        "__rust",
        "rust_begin_unwind",
        "rust_panic",
        "backtrace::",
        "<backtrace::",
        // The hook and the catch scope.
        "watchpost::panic::hook::on_panic",
        "watchpost::panic::hook::PanicHook",
        "watchpost::panic::backtrace::capture",
        "watchpost::panic::catch::CatchScope",
        "<watchpost::panic::catch::CatchUnwind",
    ];
    PREFIXES.iter().any(|p| symbol.starts_with(p))
        // Closure call shims: `<F as core::ops::function::FnOnce<()>>::call_once`.
        || (symbol.starts_with('<') && symbol.contains(" as core::ops::function::Fn"))
}

/// Where the interesting part of a stack ends: the thread's or `main`'s
/// entry, or the `catch_unwind` that catches this panic (a catch-panic
/// layer's, a Tokio task's): below it is runtime and framework plumbing.
fn is_boundary(symbol: &str) -> bool {
    symbol.contains("__rust_begin_short_backtrace")
        || symbol == "__rust_try"
        || [
            "std::rt::lang_start",
            "std::panicking::try",
            "std::panicking::catch_unwind",
            "std::panic::catch_unwind",
        ]
        .iter()
        .any(|p| symbol.starts_with(p))
}

/// The frames between the panic machinery at the top and the runtime at
/// the bottom; all of them when that leaves none.
fn kept<'f, 'a>(frames: &'f [Frame<'a>]) -> &'f [Frame<'a>] {
    // Everything above the standard library's marker is the hook's own call.
    let start = frames
        .iter()
        .rposition(|f| f.symbol.contains("__rust_end_short_backtrace"))
        .map_or(0, |i| i.saturating_add(1));
    let after_marker = frames.get(start..).unwrap_or_default();
    let skip = after_marker
        .iter()
        .take_while(|f| is_machinery(f.symbol))
        .count();
    let rest = after_marker.get(skip..).unwrap_or_default();
    let end = rest
        .iter()
        .position(|f| is_boundary(f.symbol))
        .unwrap_or(rest.len());
    let mut kept = rest.get(..end).unwrap_or_default();
    while let Some((last, init)) = kept.split_last() {
        if !is_machinery(last.symbol) {
            break;
        }
        kept = init;
    }
    if kept.is_empty() {
        // Nothing but machinery (a panic inside the standard library with
        // no caller of ours, say): show it rather than nothing.
        kept = after_marker;
    }
    kept
}

/// At most [`FRAMES_MAX`] frames as text, renumbered from 0.
fn render(kept: &[Frame<'_>]) -> String {
    let mut out = String::new();
    for (i, frame) in kept.iter().take(FRAMES_MAX).enumerate() {
        let _ = write!(out, "{i:>3}: {}", truncate(frame.symbol, SYMBOL_MAX));
        for at in &frame.at {
            let _ = write!(out, "\n        {at}");
        }
        out.push('\n');
    }
    let more = kept.len().saturating_sub(FRAMES_MAX);
    if more > 0 {
        let _ = writeln!(out, "     … {more} more frames");
    }
    if out.is_empty() {
        out.push_str("no frames\n");
    }
    out
}

/// Keeps the frames between the panic machinery at the top and the runtime
/// at the bottom, at most [`FRAMES_MAX`] of them, renumbered from 0.
#[cfg(test)]
fn trim(text: &str) -> String {
    render(kept(&parse_frames(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backtrace as `Backtrace`'s `Display` prints it for a panic in a
    /// request handler under a catch-panic layer on a Tokio worker.
    const HANDLER_BACKTRACE: &str = "   0: watchpost::panic::backtrace::capture
             at ./src/panic/backtrace.rs:30:21
   1: watchpost::panic::hook::on_panic
             at ./src/panic/hook.rs:250:5
   2: <alloc::boxed::Box<dyn for<'a, 'b> core::ops::function::Fn<(&'a std::panic::PanicHookInfo<'b>,), Output = ()> + core::marker::Sync + core::marker::Send> as core::ops::function::Fn<(&std::panic::PanicHookInfo,)>>::call
             at /rustc/hash/library/alloc/src/boxed.rs:2254:9
   3: std::panicking::panic_with_hook
             at /rustc/hash/library/std/src/panicking.rs:833:13
   4: std::panicking::panic_handler::{closure#0}
             at /rustc/hash/library/std/src/panicking.rs:691:13
   5: std::sys::backtrace::__rust_end_short_backtrace::<std::panicking::panic_handler::{closure#0}, !>
             at /rustc/hash/library/std/src/sys/backtrace.rs:182:18
   6: __rustc::rust_begin_unwind
             at /rustc/hash/library/std/src/panicking.rs:689:5
   7: core::panicking::panic_fmt
             at /rustc/hash/library/core/src/panicking.rs:80:14
   8: core::panicking::panic
             at /rustc/hash/library/core/src/panicking.rs:150:5
   9: core::option::unwrap_failed
             at /rustc/hash/library/core/src/option.rs:2236:5
  10: core::option::Option<T>::unwrap
             at /rustc/hash/library/core/src/option.rs:1016:21
  11: shop::orders::total
             at ./src/orders.rs:88:41
  12: shop::orders::show::{{closure}}
             at ./src/orders.rs:31:17
  13: <watchpost::panic::catch::CatchUnwind<F> as core::future::future::Future>::poll::{{closure}}
             at ./crates/watchpost/src/panic/catch.rs:200:20
  14: <core::panic::unwind_safe::AssertUnwindSafe<F> as core::ops::function::FnOnce<()>>::call_once
             at /rustc/hash/library/core/src/panic/unwind_safe.rs:274:9
  15: std::panicking::catch_unwind::do_call
             at /rustc/hash/library/std/src/panicking.rs:581:40
  16: __rust_try
  17: std::panicking::catch_unwind
             at /rustc/hash/library/std/src/panicking.rs:544:19
  18: tokio::runtime::task::harness::poll_future
  19: tokio::runtime::scheduler::multi_thread::worker::run
";

    #[test]
    fn backtrace_keeps_the_frames_between_the_panic_and_the_catch() {
        let trimmed = trim(HANDLER_BACKTRACE);
        assert_eq!(
            trimmed,
            "  0: shop::orders::total\n        at ./src/orders.rs:88:41\n  \
             1: shop::orders::show::{{closure}}\n        at ./src/orders.rs:31:17\n"
        );
    }

    #[test]
    fn backtrace_stops_at_main_and_thread_entry() {
        let text = "   0: std::sys::backtrace::__rust_end_short_backtrace
   1: core::panicking::panic_fmt
   2: app::main
             at ./src/main.rs:12:5
   3: core::ops::function::FnOnce::call_once
   4: std::sys::backtrace::__rust_begin_short_backtrace
   5: std::rt::lang_start::{{closure}}
   6: main
";
        assert_eq!(
            trim(text),
            "  0: app::main\n        at ./src/main.rs:12:5\n"
        );
    }

    #[test]
    fn backtrace_without_the_marker_skips_the_hook_frames() {
        let text = "   0: watchpost::panic::backtrace::capture
   1: std::panicking::panic_with_hook
   2: app::work
   3: std::rt::lang_start
";
        assert_eq!(trim(text), "  0: app::work\n");
    }

    #[test]
    fn backtrace_is_capped() {
        let mut text = String::from("   0: core::panicking::panic\n");
        for i in 1..=40 {
            text.push_str(&format!("  {i}: app::recurse\n"));
        }
        let trimmed = trim(&text);
        assert_eq!(trimmed.lines().count(), FRAMES_MAX + 1);
        assert!(trimmed.ends_with("… 15 more frames\n"), "{trimmed}");
    }

    #[test]
    fn backtrace_of_only_machinery_is_shown_anyway() {
        let text = "   0: core::panicking::panic\n   1: core::option::unwrap_failed\n";
        assert_eq!(
            trim(text),
            "  0: core::panicking::panic\n  1: core::option::unwrap_failed\n"
        );
        assert_eq!(trim(""), "no frames\n");
        assert_eq!(trim("garbage\n\n"), "no frames\n");
    }

    #[test]
    fn real_backtrace_starts_at_the_caller() {
        // Captured outside a panic: no marker, the test's own frame first.
        #[inline(never)]
        fn here() -> Captured {
            capture()
        }
        let captured = here();
        let first = captured.text.lines().next().unwrap_or_default();
        if captured.text.contains("unavailable") {
            assert!(captured.frames.is_empty());
            return;
        }
        assert!(
            first.contains("real_backtrace_starts_at_the_caller::here"),
            "{}",
            captured.text
        );
        let frame = captured.frames.first().map(StackFrame::function);
        assert!(
            frame.is_some_and(|f| f.contains("real_backtrace_starts_at_the_caller::here")),
            "{:?}",
            captured.frames
        );
        assert!(captured.frames.len() <= FRAMES_MAX);
    }

    #[test]
    fn frames_keep_the_same_selection_as_the_text() {
        let frames = parse_frames(HANDLER_BACKTRACE);
        let structured = structured(kept(&frames));
        assert_eq!(structured.len(), 2);
        assert_eq!(structured[0].function(), "shop::orders::total");
        assert_eq!(structured[0].file(), Some("./src/orders.rs"));
        assert_eq!(
            (structured[0].line(), structured[0].column()),
            (Some(88), Some(41))
        );
        assert_eq!(structured[1].function(), "shop::orders::show::{{closure}}");
    }
}
