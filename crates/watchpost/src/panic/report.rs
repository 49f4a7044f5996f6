//! A panic in structured form, carried by its alert for the sinks that can
//! show a stack trace (Sentry).

/// What the panic hook saw, in structured form: the message, where, on
/// which thread, and the backtrace's frames.
///
/// The panic hook (and [`Panicked::report`](super::Panicked::report))
/// attach one to the critical alert they send; read it with
/// [`Alert::panic_report`](crate::alert::Alert::panic_report). Sinks that
/// understand stack traces use it (the Sentry sink sends an exception with
/// a stack trace); the others render the alert's text detail, which says
/// the same in words.
///
/// # Examples
///
/// A custom sink reading it:
///
/// ```
/// use watchpost::alert::Notification;
///
/// fn innermost_function(n: &Notification) -> Option<&str> {
///     let report = n.alert().panic_report()?;
///     report.frames().first().map(|frame| frame.function())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanicReport {
    message: String,
    location: Option<String>,
    thread: String,
    frames: Vec<StackFrame>,
}

impl PanicReport {
    pub(crate) fn new(
        message: impl Into<String>,
        location: Option<&str>,
        thread: impl Into<String>,
        frames: Vec<StackFrame>,
    ) -> Self {
        Self {
            message: message.into(),
            location: location.map(str::to_owned),
            thread: thread.into(),
            frames,
        }
    }

    /// The panic message (`Box<dyn Any>` if the payload wasn't a string),
    /// capped at 2000 characters.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Where it panicked (`src/orders.rs:88:41`), if known: the hook knows,
    /// a panic caught without the hook installed doesn't.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    /// The panicking thread's name (`<unnamed>` for a thread without one).
    pub fn thread(&self) -> &str {
        &self.thread
    }

    /// The backtrace's frames, innermost (the panicking function) first, as
    /// a backtrace prints them, trimmed like the alert's text: the panic
    /// machinery above and the runtime below left out. The framework frames
    /// the text folds are here too, marked not [`in_app`](StackFrame::in_app);
    /// 100 frames at most.
    /// Empty when no backtrace was captured (turned off with
    /// [`PanicHook::backtrace`](super::PanicHook::backtrace), unsupported
    /// on this platform, or a panic reported without the hook).
    pub fn frames(&self) -> &[StackFrame] {
        &self.frames
    }
}

/// One frame of a [`PanicReport`]'s backtrace: a function and where in
/// the source it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackFrame {
    function: String,
    file: Option<String>,
    line: Option<u32>,
    column: Option<u32>,
    in_app: Option<bool>,
}

impl StackFrame {
    /// A frame from a backtrace's symbol line and its first `at` line
    /// (`at ./src/orders.rs:88:41`), if any.
    pub(crate) fn from_parts(
        function: String,
        file: Option<String>,
        line: Option<u32>,
        column: Option<u32>,
        in_app: Option<bool>,
    ) -> Self {
        Self {
            function,
            file,
            line,
            column,
            in_app,
        }
    }

    pub(crate) fn parse(function: &str, at: Option<&str>) -> Self {
        let mut frame = Self {
            function: function.to_owned(),
            file: None,
            line: None,
            column: None,
            in_app: None,
        };
        let Some(at) = at else {
            return frame;
        };
        let location = at.strip_prefix("at ").unwrap_or(at).trim();
        // `file:line:column`, `file:line` or `file`; the file may itself
        // hold colons (`C:\src\main.rs`), so numbers are taken from the end.
        let number = |s: &str| s.parse::<u32>().ok();
        let mut file = location;
        let mut numbers = Vec::with_capacity(2);
        while numbers.len() < 2 {
            match file.rsplit_once(':') {
                Some((rest, n)) if number(n).is_some() => {
                    numbers.push(number(n));
                    file = rest;
                }
                _ => break,
            }
        }
        match numbers.as_slice() {
            [column, line] => {
                frame.line = *line;
                frame.column = *column;
            }
            [line] => frame.line = *line,
            _ => {}
        }
        if !file.is_empty() {
            frame.file = Some(file.to_owned());
        }
        frame
    }

    /// The function, as the backtrace names it
    /// (`shop::orders::show::{{closure}}`).
    pub fn function(&self) -> &str {
        &self.function
    }

    /// The source file, if known. The panic hook's frames have it relative
    /// to its crate: `src/orders.rs`, a dependency's
    /// `axum-0.8.9/src/routing/route.rs`, the standard library's
    /// `core/src/option.rs`.
    pub fn file(&self) -> Option<&str> {
        self.file.as_deref()
    }

    /// The line, if known.
    pub fn line(&self) -> Option<u32> {
        self.line
    }

    /// The column, if known.
    pub fn column(&self) -> Option<u32> {
        self.column
    }

    /// Whether the frame is the application's own code (`Some(true)`) or
    /// the standard library's, a framework's or a dependency's
    /// (`Some(false)`: the frames the alert's text folds), if known.
    pub fn in_app(&self) -> Option<bool> {
        self.in_app
    }

    /// The frame, marked as the application's own code or not.
    #[must_use]
    pub(crate) fn with_in_app(mut self, in_app: bool) -> Self {
        self.in_app = Some(in_app);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_location_is_read_from_the_end() {
        let f = StackFrame::parse("app::main", Some("at ./src/main.rs:12:5"));
        assert_eq!(
            (f.function(), f.file(), f.line(), f.column()),
            ("app::main", Some("./src/main.rs"), Some(12), Some(5))
        );
        let f = StackFrame::parse("f", Some(r"at C:\src\main.rs:7"));
        assert_eq!(
            (f.file(), f.line(), f.column()),
            (Some(r"C:\src\main.rs"), Some(7), None)
        );
        let f = StackFrame::parse("f", Some("at /x/lib.rs"));
        assert_eq!((f.file(), f.line()), (Some("/x/lib.rs"), None));
        let f = StackFrame::parse("f", None);
        assert_eq!((f.file(), f.line(), f.column()), (None, None, None));
        let f = StackFrame::parse("f", Some("at :3:4"));
        assert_eq!((f.file(), f.line(), f.column()), (None, Some(3), Some(4)));
    }

    #[test]
    fn frame_in_app_is_unknown_until_marked() {
        let f = StackFrame::parse("app::main", Some("at src/main.rs:12:5"));
        assert_eq!(f.in_app(), None);
        assert_eq!(f.clone().with_in_app(true).in_app(), Some(true));
        assert_eq!(f.with_in_app(false).in_app(), Some(false));
    }
}
