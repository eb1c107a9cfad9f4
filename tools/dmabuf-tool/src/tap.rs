//! A small TAP version 13 reporter: `ok N - desc` / `not ok N - desc` with
//! `# reason` diagnostics, the plan `1..N` at the end.

use std::io::Write;

use crate::report::Reporter;

/// Make `desc` safe for a test line: one line, `#` escaped (TAP 13).
pub fn escape(desc: &str) -> String {
    desc.replace(['\n', '\r'], " ").replace('#', "\\#")
}

pub struct Tap<W: Write> {
    out: W,
    n: usize,
    failed: usize,
    bailed: bool,
}

impl<W: Write> Tap<W> {
    /// Starts the stream with `TAP version 13`.
    pub fn new(out: W) -> Self {
        let mut t = Tap {
            out,
            n: 0,
            failed: 0,
            bailed: false,
        };
        t.line("TAP version 13");
        t
    }

    fn line(&mut self, s: &str) {
        // Stdout is where the results go; if it is gone there is no one to tell.
        let _ = writeln!(self.out, "{s}");
        let _ = self.out.flush();
    }

    fn diag(&mut self, text: &str) {
        for l in text.lines() {
            self.line(&format!("# {l}"));
        }
    }

    pub fn ok(&mut self, desc: &str) {
        self.n += 1;
        let l = format!("ok {} - {}", self.n, escape(desc));
        self.line(&l);
    }

    pub fn not_ok(&mut self, desc: &str, reason: &str) {
        self.n += 1;
        self.failed += 1;
        let l = format!("not ok {} - {}", self.n, escape(desc));
        self.line(&l);
        self.diag(reason);
    }

    pub fn passed(&self) -> usize {
        self.n - self.failed
    }
}

impl<W: Write> Reporter for Tap<W> {
    fn section(&mut self, title: &str) {
        self.diag(&format!("--- {title}"));
    }

    fn explain(&mut self, _text: &str) {}

    fn step(&mut self, desc: &str, facts: &[String], outcome: Result<(), &str>) {
        match outcome {
            Ok(()) => self.ok(desc),
            Err(reason) => self.not_ok(desc, reason),
        }
        for f in facts {
            self.diag(&format!("  {f}"));
        }
    }

    /// `ok N - desc # SKIP reason` (TAP 13): counted as passed.
    fn skip(&mut self, desc: &str, reason: &str) {
        self.n += 1;
        let l = format!("ok {} - {} # SKIP {}", self.n, escape(desc), escape(reason));
        self.line(&l);
    }

    fn comment(&mut self, line: &str) {
        self.diag(line);
    }

    fn bail(&mut self, reason: &str) {
        self.bailed = true;
        self.line(&format!("Bail out! {}", escape(reason)));
    }

    /// Prints the plan and a summary comment; true when nothing failed and
    /// the run did not bail out.
    fn finish(&mut self) -> bool {
        let plan = format!("1..{}", self.n);
        self.line(&plan);
        let summary = format!("{} passed, {} failed", self.passed(), self.failed);
        self.diag(&summary);
        self.failed == 0 && !self.bailed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: impl FnOnce(&mut Tap<&mut Vec<u8>>) -> bool) -> (String, bool) {
        let mut buf = Vec::new();
        let ok = {
            let mut t = Tap::new(&mut buf);
            f(&mut t)
        };
        (String::from_utf8(buf).unwrap(), ok)
    }

    #[test]
    fn all_pass() {
        let (s, ok) = run(|t| {
            t.ok("first");
            t.step("second", &["fd 5".into()], Ok(()));
            t.finish()
        });
        assert!(ok);
        assert_eq!(
            s,
            "TAP version 13\nok 1 - first\nok 2 - second\n#   fd 5\n1..2\n# 2 passed, 0 failed\n"
        );
    }

    #[test]
    fn failure_with_reason() {
        let (s, ok) = run(|t| {
            t.ok("a");
            t.step("b", &[], Err("expected ENODEV, got success\nsecond line"));
            t.comment("expect-dmar-fault");
            t.finish()
        });
        assert!(!ok);
        assert_eq!(
            s,
            "TAP version 13\nok 1 - a\nnot ok 2 - b\n# expected ENODEV, got success\n# second line\n\
             # expect-dmar-fault\n1..2\n# 1 passed, 1 failed\n"
        );
    }

    #[test]
    fn bail_out_fails_the_run() {
        let (s, ok) = run(|t| {
            t.ok("a");
            t.bail("no /dev/iommu");
            t.finish()
        });
        assert!(!ok);
        assert!(s.contains("\nBail out! no /dev/iommu\n"));
        assert!(s.ends_with("1..1\n# 1 passed, 0 failed\n"));
    }

    #[test]
    fn skip_directive() {
        let (s, ok) = run(|t| {
            t.skip("no exporter # here", "none reachable");
            t.finish()
        });
        assert!(ok);
        assert_eq!(
            s,
            "TAP version 13\nok 1 - no exporter \\# here # SKIP none reachable\n1..1\n# 1 passed, 0 failed\n"
        );
    }

    #[test]
    fn escapes_hash_and_newlines() {
        assert_eq!(escape("a # b\nc"), "a \\# b c");
        let (s, _) = run(|t| {
            t.ok("x # SKIP-looking");
            t.finish()
        });
        assert!(s.contains("ok 1 - x \\# SKIP-looking\n"));
    }
}
