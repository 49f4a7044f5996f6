//! A backtrace trimmed to the frames that matter, the application's own
//! first.
//!
//! - **Trimmed** ([`kept`]): the frames between the panic machinery at the
//!   top and the runtime (the `catch_unwind` catching the panic, `main`,
//!   the thread's entry) at the bottom.
//! - **Classified** ([`is_application`]): a frame is the application's
//!   unless its symbol's crate is the standard library, an async runtime,
//!   a web framework or watchpost ([`FRAMEWORK_CRATES`]), or its source is
//!   a dependency's (a Cargo registry or git checkout) or the standard
//!   library's (`/rustc/<hash>/`).
//! - **Shown** ([`render`]): the application's frames, renumbered from 0,
//!   each run of the others folded into one `… N framework frames` line.
//!   A backtrace without any application frame is shown whole instead.
//! - **Paths shortened** ([`short_path`]) to the crate: `src/main.rs:42:5`,
//!   `axum-0.8.9/src/routing/route.rs:149:41`, `core/src/option.rs:2236:5`;
//!   never the build machine's directories.
//!
//! The structured frames ([`structured`]) keep every frame the text covers,
//! folded ones included, with the same paths, marked
//! [`in_app`](StackFrame::in_app) or not.
//!
//! - **Resolved only as far as shown** ([`capture_shown`]): the stack is
//!   walked unresolved, then its frames are resolved (symbol, file, line)
//!   from the innermost outwards, stopping at the boundary below the panic
//!   (see [`kept`]): the frames under it (the thread's start, `main`'s
//!   caller in the C library) are never shown, and resolving them is what
//!   costs most: a frame in a shared library loads that library's debug
//!   info (the C library's, where a `-dbg` package installed it: tens of
//!   milliseconds, against one or two for the frames shown). The standard
//!   library's `Backtrace` resolves every frame on its first print; it is
//!   used only in builds with debug assertions (see [`capture`]).
//!
//! It all runs in the panic hook: nothing here may panic (no indexing, no
//! unwrapping, no unchecked arithmetic).

use std::fmt::Write as _;

use super::report::StackFrame;
use super::truncate;

/// Application frames shown in the text (the framework frames among them
/// are folded, not counted).
const FRAMES_MAX: usize = 25;
/// Frames in a [`PanicReport`](super::PanicReport), application and
/// framework frames together.
const STACK_FRAMES_MAX: usize = 100;
/// A frame's symbol cap in the text, in characters (async and generic code
/// has long ones).
const SYMBOL_MAX: usize = 200;
/// A frame's function cap in a [`StackFrame`], in characters: longer than
/// in the text, where a stack trace viewer has room for it.
const FUNCTION_MAX: usize = 1000;

/// The crates whose frames are folded: the standard library, the async
/// runtime and the web stack under a handler, and watchpost itself. Any
/// other crate's frames are folded too when their source is in a Cargo
/// registry or git checkout (see [`short_path`]); this list covers them
/// without one (a path dependency, a binary without debug info for them).
const FRAMEWORK_CRATES: &[&str] = &[
    // The standard library.
    "std",
    "core",
    "alloc",
    "proc_macro",
    "test",
    "panic_unwind",
    "panic_abort",
    // Async runtime and futures.
    "tokio",
    "tokio_util",
    "tokio_stream",
    "futures",
    "futures_util",
    "futures_core",
    "futures_task",
    "futures_executor",
    "futures_channel",
    "pin_project",
    "pin_project_lite",
    "tracing",
    "tracing_futures",
    "tracing_core",
    // HTTP and tower.
    "tower",
    "tower_http",
    "tower_layer",
    "tower_service",
    "hyper",
    "hyper_util",
    "http",
    "http_body",
    "http_body_util",
    "h2",
    // Web frameworks.
    "axum",
    "axum_core",
    "actix_web",
    "actix_http",
    "actix_service",
    "actix_server",
    "actix_rt",
    "actix_router",
    "actix_utils",
    "actix_codec",
    // Watchpost.
    "watchpost",
    "watchpost_tower",
    "watchpost_axum",
    "watchpost_actix",
    "watchpost_redis",
];

/// A backtrace of the calling thread, trimmed (see [`kept`]): as text for
/// the alert's detail, and as frames for the [`PanicReport`].
///
/// [`PanicReport`]: super::PanicReport
#[derive(Debug, Default)]
pub(super) struct Captured {
    /// The trimmed backtrace as text, one application frame per line with
    /// its `at` lines, framework frames folded.
    pub(super) text: String,
    /// The same frames, folded ones included, innermost first.
    pub(super) frames: Vec<StackFrame>,
}

/// Frames walked at most: a deeper stack (a deep recursion) is cut
/// there, the frames that matter being at its top.
const RAW_FRAMES_MAX: usize = 1024;

/// The standard library's frame right under the panic machinery (the
/// hook's own call is above it).
const MARKER: &str = "__rust_end_short_backtrace";

/// A backtrace of the calling thread, trimmed (see [`kept`]).
///
/// Resolved only as far as it is shown ([`capture_shown`]) in an
/// optimized build. A build with debug assertions (a dev build, whose
/// dependencies are not optimized either) goes through the standard
/// library's `Backtrace` ([`capture_all`]) instead: it resolves every
/// frame, but with the standard library's resolver, which is always
/// optimized, where an unoptimized one takes several times longer.
pub(super) fn capture() -> Captured {
    if cfg!(debug_assertions) {
        capture_all()
    } else {
        capture_shown()
    }
}

/// What is captured where no backtrace can be.
fn unavailable() -> Captured {
    Captured {
        text: "unavailable on this platform".to_owned(),
        frames: Vec::new(),
    }
}

/// The text and frames of `frames`, trimmed.
fn trimmed(frames: &[Frame<'_>]) -> Captured {
    let entries = classify(kept(frames));
    Captured {
        text: render(&entries),
        frames: structured(&entries),
    }
}

/// The standard library's `Backtrace`, every frame resolved as it is
/// printed, then trimmed.
fn capture_all() -> Captured {
    let backtrace = std::backtrace::Backtrace::force_capture();
    if backtrace.status() != std::backtrace::BacktraceStatus::Captured {
        return unavailable();
    }
    let mut text = String::new();
    let _ = write!(text, "{backtrace}");
    trimmed(&parse_frames(&text))
}

/// The stack walked unresolved, then resolved only as far as the text and
/// the report can show it (see [`resolve_shown`]), then trimmed.
fn capture_shown() -> Captured {
    let mut raw: Vec<backtrace::Frame> = Vec::with_capacity(64);
    backtrace::trace(|frame| {
        raw.push(frame.clone());
        raw.len() < RAW_FRAMES_MAX
    });
    if raw.is_empty() {
        return unavailable();
    }
    let resolved = resolve_shown(&raw, |frame, out| {
        backtrace::resolve_frame(frame, |symbol| out.push(Resolved::of(symbol)));
    });
    let frames: Vec<Frame<'_>> = resolved.iter().map(Resolved::frame).collect();
    trimmed(&frames)
}

/// A frame's symbol as a printed backtrace shows it: the demangled name
/// without its hash, and its `at file:line:column` line.
#[derive(Debug)]
struct Resolved {
    symbol: String,
    at: Option<String>,
}

impl Resolved {
    fn of(symbol: &backtrace::Symbol) -> Self {
        let name = match symbol.name() {
            Some(name) => format!("{name:#}"),
            None => "<unknown>".to_owned(),
        };
        let at = symbol.filename().map(|file| {
            let mut at = format!("at {}", file.display());
            if let Some(line) = symbol.lineno() {
                let _ = write!(at, ":{line}");
                if let Some(column) = symbol.colno() {
                    let _ = write!(at, ":{column}");
                }
            }
            at
        });
        Self { symbol: name, at }
    }

    fn frame(&self) -> Frame<'_> {
        Frame {
            symbol: &self.symbol,
            at: self.at.as_deref().into_iter().collect(),
        }
    }
}

/// Resolves `raw`'s frames with `resolve`, innermost first (an inlined
/// call is a symbol of its own, as in a printed backtrace), up to the
/// first boundary (see [`is_boundary`]) below the panic machinery: what
/// [`kept`] keeps never goes further, and the frames under it are the
/// costly ones (the thread's start and `main`'s caller are in the C
/// library). Without the machinery's marker (a capture outside a panic)
/// every frame is resolved.
fn resolve_shown<F>(raw: &[F], mut resolve: impl FnMut(&F, &mut Vec<Resolved>)) -> Vec<Resolved> {
    let mut resolved = Vec::with_capacity(raw.len().min(128));
    let mut past_marker = false;
    for frame in raw {
        let first = resolved.len();
        resolve(frame, &mut resolved);
        if resolved.len() == first {
            resolved.push(Resolved {
                symbol: "<unknown>".to_owned(),
                at: None,
            });
        }
        let symbols = resolved.get(first..).unwrap_or_default();
        if past_marker && symbols.iter().any(|s| is_boundary(&s.symbol)) {
            break;
        }
        past_marker |= symbols.iter().any(|s| s.symbol.contains(MARKER));
    }
    resolved
}

/// The frames the text covers (see [`covered`]), at most
/// [`STACK_FRAMES_MAX`], as [`StackFrame`]s, innermost first: folded
/// frames included, marked not [`in_app`](StackFrame::in_app).
fn structured(entries: &[Entry<'_>]) -> Vec<StackFrame> {
    entries
        .iter()
        .take(covered(entries).min(STACK_FRAMES_MAX))
        .map(|e| {
            let function = truncate(e.symbol, FUNCTION_MAX);
            StackFrame::parse(&function, e.at.first().map(String::as_str)).with_in_app(e.app)
        })
        .collect()
}

/// One frame of a backtrace, as printed: the symbol and its `at` lines.
#[derive(Debug)]
struct Frame<'a> {
    symbol: &'a str,
    at: Vec<&'a str>,
}

/// The frames of a backtrace as the standard library's `Backtrace`
/// prints it.
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
        .rposition(|f| f.symbol.contains(MARKER))
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

/// A kept frame, classified, its paths shortened.
#[derive(Debug)]
struct Entry<'a> {
    symbol: &'a str,
    /// The `at` lines, paths shortened (see [`short_at`]).
    at: Vec<String>,
    /// The application's own code (see [`is_application`]).
    app: bool,
}

fn classify<'a>(kept: &[Frame<'a>]) -> Vec<Entry<'a>> {
    kept.iter()
        .map(|frame| {
            let mut local = true;
            let at = frame
                .at
                .iter()
                .map(|line| {
                    let (short, origin) = short_at(line);
                    local &= origin == Origin::Local;
                    short
                })
                .collect();
            Entry {
                symbol: frame.symbol,
                at,
                app: local && is_application(frame.symbol),
            }
        })
        .collect()
}

/// Whether a symbol is the application's by its crate (see [`crate_of`]):
/// a crate known, and not one of [`FRAMEWORK_CRATES`] (nor the standard
/// library's `__rustc`). A symbol without a crate (`main`, `__rust_try`,
/// `<unknown>`) is the C runtime's or unresolved: not the application's.
fn is_application(symbol: &str) -> bool {
    crate_of(symbol, 0)
        .is_some_and(|name| !name.starts_with("__") && !FRAMEWORK_CRATES.contains(&name))
}

/// How deep [`crate_of`] follows nested qualified paths
/// (`<<F as Trait>::Output as Other>::f`).
const NESTING_MAX: usize = 8;

/// The crate a symbol belongs to: its path's first segment
/// (`axum::routing::x` → `axum`). For a qualified path `<Type as
/// Trait>::f`, the type's (`<core::pin::Pin<P> as …>::poll` → `core`,
/// through references, `dyn`, slices and tuples), or the trait's when the
/// type has no path: a generic parameter or a primitive (`<F as
/// axum::handler::Handler<T, S>>::call` → `axum`). `None` without a path
/// (`main`, `__rust_try`, `{{closure}}`, `<unknown>`).
fn crate_of(symbol: &str, depth: usize) -> Option<&str> {
    let symbol = symbol.trim();
    let Some(inner) = symbol.strip_prefix('<') else {
        return path_crate(symbol);
    };
    let (self_type, trait_path) = split_qualified(inner);
    type_crate(self_type, depth).or_else(|| trait_path.and_then(|t| type_crate(t, depth)))
}

/// A qualified path's inside, `Type as Trait>::f`, as the type and the
/// trait (`Type>::f`: the type alone), split at the top level.
fn split_qualified(inner: &str) -> (&str, Option<&str>) {
    let mut depth = 0_usize;
    let mut previous = 0_u8;
    let mut as_at = None;
    for (i, b) in inner.bytes().enumerate() {
        match b {
            b'<' => depth = depth.saturating_add(1),
            // `->` in `dyn Fn(&str) -> bool` closes nothing.
            b'>' if previous != b'-' => {
                if depth == 0 {
                    return match as_at {
                        Some(a) => (
                            inner.get(..a).unwrap_or_default(),
                            inner.get(a.saturating_add(4)..i),
                        ),
                        None => (inner.get(..i).unwrap_or_default(), None),
                    };
                }
                depth = depth.saturating_sub(1);
            }
            b' ' if depth == 0
                && as_at.is_none()
                && inner.get(i..).is_some_and(|s| s.starts_with(" as ")) =>
            {
                as_at = Some(i);
            }
            _ => {}
        }
        previous = b;
    }
    // Unbalanced (a symbol cut short): what there is.
    match as_at {
        Some(a) => (
            inner.get(..a).unwrap_or_default(),
            inner.get(a.saturating_add(4)..),
        ),
        None => (inner, None),
    }
}

/// The crate of a type or trait path in a qualified path: `&mut T`,
/// `dyn T`, `*const T`, `[T]` and `(T, U)` are `T`'s.
fn type_crate(path: &str, depth: usize) -> Option<&str> {
    const WRAPPERS: &[&str] = &["&", "mut ", "dyn ", "*const ", "*mut ", "[", "("];
    let mut path = path.trim_start();
    loop {
        if let Some(rest) = WRAPPERS.iter().find_map(|w| path.strip_prefix(*w)) {
            path = rest.trim_start();
        } else if let Some(rest) = path.strip_prefix('\'') {
            // A lifetime: `&'a T`.
            path = rest.split_once(' ').map_or("", |(_, t)| t).trim_start();
        } else {
            break;
        }
    }
    if path.starts_with('<') {
        return (depth < NESTING_MAX)
            .then(|| crate_of(path, depth.saturating_add(1)))
            .flatten();
    }
    path_crate(path)
}

/// The first segment of a path, if it has more than one and the first is
/// a name (`axum` of `axum::routing::x`; nothing for `F`, `main`,
/// `{{closure}}::x`).
fn path_crate(path: &str) -> Option<&str> {
    let (first, _) = path.split_once("::")?;
    let name = !first.is_empty() && first.chars().all(|c| c.is_alphanumeric() || c == '_');
    name.then_some(first)
}

/// Where a source file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The application's (or an unknown place's).
    Local,
    /// A dependency's (a Cargo registry, a git checkout) or the standard
    /// library's (`/rustc/<hash>/`, a toolchain's `rustlib`).
    Dependency,
}

/// A backtrace `at` line with its path shortened (see [`short_path`]),
/// the line and column kept: `at ./src/main.rs:42:5` → `at
/// src/main.rs:42:5`. Any other line is kept as it is.
fn short_at(line: &str) -> (String, Origin) {
    let Some(location) = line.strip_prefix("at ") else {
        return (line.to_owned(), Origin::Local);
    };
    let location = location.trim();
    // `file:line:column`, `file:line` or `file`: the numbers are taken from
    // the end, the file may hold colons (`C:\src\main.rs`).
    let mut file = location;
    for _ in 0..2 {
        match file.rsplit_once(':') {
            Some((rest, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                file = rest;
            }
            _ => break,
        }
    }
    let numbers = location.get(file.len()..).unwrap_or_default();
    let (short, origin) = short_path(file);
    (format!("at {short}{numbers}"), origin)
}

/// The directories a crate's sources are in.
const SOURCE_DIRS: &[&str] = &["src", "examples", "tests", "benches"];

/// A source path relative to its crate, and whether it is a dependency's.
/// `/` and `\` both separate (the result uses `/`); `.` and `..` are
/// resolved first where they can be (`./src/bin/../../app.rs` →
/// `app.rs`).
///
/// - The standard library: `/rustc/<hash>/library/core/src/option.rs` →
///   `core/src/option.rs`, the same from a toolchain's
///   `lib/rustlib/src/rust/library/`.
/// - A registry crate, whatever the Cargo home:
///   `…/registry/src/index.crates.io-<hash>/axum-0.8.9/src/routing/route.rs`
///   → `axum-0.8.9/src/routing/route.rs`.
/// - A git dependency: `…/git/checkouts/<repo>-<hash>/<rev>/…` → the path
///   inside the repository (`tokio/src/lib.rs`), after the repository's
///   name when that path starts at `src` (a one-crate repository:
///   `<repo>/src/lib.rs`).
/// - Anything else is the application's: from the last `src`,
///   `examples`, `tests` or `benches` directory
///   (`/home/ci/app/crates/api/src/orders.rs` → `src/orders.rs`; a
///   `tests`, `examples` or `benches` directly in `src` is a module, kept
///   with its `src`: `src/tests/util.rs`); with none of those, the file's
///   name alone (`./src/bin/../../app.rs`, a `#[path]` include outside the
///   crate, → `app.rs`; generated code in `target/…/out/` → its name).
fn short_path(file: &str) -> (String, Origin) {
    let mut parts: Vec<&str> = Vec::new();
    for part in file.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return (file.trim().to_owned(), Origin::Local);
    }
    if let Some(inside) = std_source(file, &parts)
        .or_else(|| registry_source(&parts))
        .or_else(|| git_source(&parts))
    {
        return (inside, Origin::Dependency);
    }
    let dirs = parts
        .get(..parts.len().saturating_sub(1))
        .unwrap_or_default();
    let from = dirs.iter().rposition(|p| SOURCE_DIRS.contains(p)).map(|i| {
        match i.checked_sub(1).and_then(|before| parts.get(before)) {
            Some(&"src") if parts.get(i) != Some(&"src") => i.saturating_sub(1),
            _ => i,
        }
    });
    let short = match from.and_then(|i| parts.get(i..)) {
        Some(inside) => inside.join("/"),
        None => parts.last().copied().unwrap_or(file).to_owned(),
    };
    (short, Origin::Local)
}

/// A source file as messages show it: [`short_path`] without its origin
/// (for a panic's location).
pub(super) fn short_file(file: &str) -> String {
    short_path(file).0
}

/// A standard library source: the path inside `library/`.
fn std_source(file: &str, parts: &[&str]) -> Option<String> {
    let inside = if file.starts_with(['/', '\\']) && parts.first() == Some(&"rustc") {
        // `/rustc/<hash>/library/…`.
        parts.get(2..)?
    } else {
        let at = (0..parts.len()).find(|&i| {
            parts.get(i..i.saturating_add(3)) == Some(&["rustlib", "src", "rust"][..])
        })?;
        parts.get(at.saturating_add(3)..)?
    };
    let inside = match inside.split_first() {
        Some((&"library", rest)) => rest,
        _ => inside,
    };
    (!inside.is_empty()).then(|| inside.join("/"))
}

/// A registry crate's source (`registry/src/<index>-<hash>/<crate>/…`):
/// the crate's directory and the path inside it.
fn registry_source(parts: &[&str]) -> Option<String> {
    let at = (0..parts.len()).find(|&i| {
        parts.get(i) == Some(&"registry")
            && parts.get(i.saturating_add(1)) == Some(&"src")
            && parts.get(i.saturating_add(2)).is_some_and(|d| is_hashed(d))
    })?;
    let inside = parts.get(at.saturating_add(3)..)?;
    // The crate's directory and a file in it, at least.
    (inside.len() >= 2).then(|| inside.join("/"))
}

/// A git dependency's source (`git/checkouts/<repo>-<hash>/<rev>/…`): the
/// path inside the repository, after the repository's name when that path
/// starts at `src`.
fn git_source(parts: &[&str]) -> Option<String> {
    let at = (0..parts.len()).find(|&i| {
        parts.get(i) == Some(&"git")
            && parts.get(i.saturating_add(1)) == Some(&"checkouts")
            && parts.get(i.saturating_add(2)).is_some_and(|d| is_hashed(d))
    })?;
    let inside = parts
        .get(at.saturating_add(4)..)
        .filter(|p| !p.is_empty())?;
    let joined = inside.join("/");
    if inside.first() == Some(&"src") {
        let repo = parts.get(at.saturating_add(2))?;
        let name = repo.rsplit_once('-').map_or(*repo, |(name, _)| name);
        return Some(format!("{name}/{joined}"));
    }
    Some(joined)
}

/// A directory Cargo names `<name>-<hash>` (`index.crates.io-1949cf8c6b5b557f`).
fn is_hashed(dir: &str) -> bool {
    dir.rsplit_once('-').is_some_and(|(name, hash)| {
        !name.is_empty() && hash.len() >= 8 && hash.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// How many entries the text covers (and the structured frames): all of
/// them, unless there are more than [`FRAMES_MAX`] application frames:
/// then up to the last one shown, the rest told as `… N more frames`.
/// Without application frames, [`FRAMES_MAX`] frames.
fn covered(entries: &[Entry<'_>]) -> usize {
    let mut apps = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.app)
        .map(|(i, _)| i);
    let Some(last_shown) = apps.by_ref().take(FRAMES_MAX).last() else {
        return entries.len().min(FRAMES_MAX);
    };
    match apps.next() {
        Some(_) => last_shown.saturating_add(1),
        None => entries.len(),
    }
}

/// The application's frames as text, renumbered from 0, each with its
/// `at` lines; each run of other frames between, before or after them as
/// one `… N framework frames` line; at most [`FRAMES_MAX`] application
/// frames, then `… N more frames`. Without application frames (a panic
/// inside the standard library or a framework with no caller of ours),
/// the frames themselves, [`FRAMES_MAX`] at most.
fn render(entries: &[Entry<'_>]) -> String {
    let covered = covered(entries);
    let fold = entries.iter().any(|e| e.app);
    let mut out = String::new();
    let mut shown = 0_usize;
    let mut folded = 0_usize;
    for entry in entries.iter().take(covered) {
        if fold && !entry.app {
            folded = folded.saturating_add(1);
            continue;
        }
        push_folded(&mut out, folded);
        folded = 0;
        let _ = write!(out, "{shown:>3}: {}", truncate(entry.symbol, SYMBOL_MAX));
        for at in &entry.at {
            let _ = write!(out, "\n        {at}");
        }
        out.push('\n');
        shown = shown.saturating_add(1);
    }
    push_folded(&mut out, folded);
    match entries.len().saturating_sub(covered) {
        0 => {}
        1 => out.push_str("     … 1 more frame\n"),
        more => {
            let _ = writeln!(out, "     … {more} more frames");
        }
    }
    if out.is_empty() {
        out.push_str("no frames\n");
    }
    out
}

/// The line standing for `n` folded frames, if any.
fn push_folded(out: &mut String, n: usize) {
    match n {
        0 => {}
        1 => out.push_str("     … 1 framework frame\n"),
        n => {
            let _ = writeln!(out, "     … {n} framework frames");
        }
    }
}

/// Keeps the frames between the panic machinery at the top and the runtime
/// at the bottom, shows the application's, folds the others.
#[cfg(test)]
fn trim(text: &str) -> String {
    render(&classify(kept(&parse_frames(text))))
}

#[cfg(test)]
mod tests;
