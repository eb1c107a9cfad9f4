//! How a run of the story is told: the `Reporter` interface, the `Runner`
//! that turns step closures into reports, and the `Narrator` that tells it
//! to a person (`dmabuf-tool demo`). The TAP reporter is in `tap.rs`.

use std::io::Write;

use crate::errno::Result;

/// Receives each step of the story as it happens.
pub trait Reporter {
    /// A group of steps begins.
    fn section(&mut self, title: &str);
    /// Background for a person; test output may drop it.
    fn explain(&mut self, text: &str);
    /// One step: what it showed (`facts`) and whether it behaved as expected.
    fn step(&mut self, desc: &str, facts: &[String], outcome: std::result::Result<(), &str>);
    /// A step that cannot be run here, and why.
    fn skip(&mut self, desc: &str, reason: &str);
    /// A machine-readable comment line, printed as `# {line}` by every reporter.
    fn comment(&mut self, line: &str);
    /// The run cannot go on.
    fn bail(&mut self, reason: &str);
    /// The run is over; true when every step behaved as expected.
    fn finish(&mut self) -> bool;
}

/// A required step failed; the run stopped.
#[derive(Debug)]
pub struct Aborted;

/// What a step found, in a few short lines.
#[derive(Debug, Default)]
pub struct Facts(Vec<String>);

impl Facts {
    pub fn add(&mut self, line: impl Into<String>) {
        self.0.push(line.into());
    }

    pub fn lines(&self) -> &[String] {
        &self.0
    }
}

/// Runs step closures and reports them.
pub struct Runner<'a> {
    rep: &'a mut dyn Reporter,
}

impl<'a> Runner<'a> {
    pub fn new(rep: &'a mut dyn Reporter) -> Self {
        Runner { rep }
    }

    pub fn section(&mut self, title: &str) {
        self.rep.section(title);
    }

    pub fn explain(&mut self, text: &str) {
        self.rep.explain(text);
    }

    pub fn comment(&mut self, line: &str) {
        self.rep.comment(line);
    }

    /// A step later steps depend on: on failure, report it, bail out and
    /// return `Aborted`.
    pub fn require<T>(
        &mut self,
        desc: &str,
        f: impl FnOnce(&mut Facts) -> Result<T>,
    ) -> std::result::Result<T, Aborted> {
        let mut facts = Facts::default();
        match f(&mut facts) {
            Ok(v) => {
                self.rep.step(desc, &facts.0, Ok(()));
                Ok(v)
            }
            Err(e) => {
                self.rep.step(desc, &facts.0, Err(&e.to_string()));
                self.rep.bail(&format!("cannot go on without: {desc}"));
                Err(Aborted)
            }
        }
    }

    /// A step whose failure is reported and the run goes on; returns its
    /// value if it passed.
    pub fn attempt<T>(&mut self, desc: &str, f: impl FnOnce(&mut Facts) -> Result<T>) -> Option<T> {
        let mut facts = Facts::default();
        match f(&mut facts) {
            Ok(v) => {
                self.rep.step(desc, &facts.0, Ok(()));
                Some(v)
            }
            Err(e) => {
                self.rep.step(desc, &facts.0, Err(&e.to_string()));
                None
            }
        }
    }

    /// A step that cannot be run here: reported as skipped, with `reason`.
    pub fn skip(&mut self, desc: &str, reason: &str) {
        self.rep.skip(desc, reason);
    }

    /// `attempt` for steps without a value; returns whether it passed.
    pub fn check(&mut self, desc: &str, f: impl FnOnce(&mut Facts) -> Result<()>) -> bool {
        self.attempt(desc, f).is_some()
    }

    pub fn finish(&mut self) -> bool {
        self.rep.finish()
    }
}

/// Tells the story to a person: numbered steps, the values that matter, no TAP.
pub struct Narrator<W: Write> {
    out: W,
    steps: usize,
    failed: usize,
}

impl<W: Write> Narrator<W> {
    pub fn new(out: W) -> Self {
        Narrator {
            out,
            steps: 0,
            failed: 0,
        }
    }

    fn line(&mut self, s: &str) {
        // Output errors (a closed console) are not worth stopping the demo for.
        let _ = writeln!(self.out, "{s}");
        let _ = self.out.flush();
    }
}

impl<W: Write> Reporter for Narrator<W> {
    fn section(&mut self, title: &str) {
        self.line("");
        self.line(&format!("== {title} =="));
    }

    fn explain(&mut self, text: &str) {
        self.line(text);
    }

    fn step(&mut self, desc: &str, facts: &[String], outcome: std::result::Result<(), &str>) {
        self.steps += 1;
        let n = self.steps;
        self.line(&format!("{n:>2}. {desc}"));
        for f in facts {
            self.line(&format!("      {f}"));
        }
        if let Err(reason) = outcome {
            self.failed += 1;
            for (i, l) in reason.lines().enumerate() {
                let lead = if i == 0 {
                    "      !! NOT AS EXPECTED: "
                } else {
                    "         "
                };
                self.line(&format!("{lead}{l}"));
            }
        }
    }

    fn skip(&mut self, desc: &str, reason: &str) {
        self.steps += 1;
        let n = self.steps;
        self.line(&format!("{n:>2}. {desc}"));
        self.line(&format!("      (skipped: {reason})"));
    }

    fn comment(&mut self, line: &str) {
        self.line(&format!("# {line}"));
    }

    fn bail(&mut self, reason: &str) {
        self.line(&format!("Stopping here: {reason}."));
    }

    fn finish(&mut self) -> bool {
        self.line("");
        if self.failed == 0 {
            self.line(&format!("All {} steps behaved as expected.", self.steps));
        } else {
            self.line(&format!(
                "{} of {} steps did not behave as expected (marked !! above).",
                self.failed, self.steps
            ));
        }
        self.failed == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno::Error;

    #[test]
    fn narrator_output() {
        let mut buf = Vec::new();
        let mut n = Narrator::new(&mut buf);
        {
            let mut r = Runner::new(&mut n);
            r.section("Setup");
            r.explain("Some words.");
            assert!(r.check("first", |f| {
                f.add("value 1");
                Ok(())
            }));
            assert!(!r.check("second", |_| Err(Error::msg("broke"))));
            r.comment("expect-dmar-fault");
            assert!(r
                .require("third", |_| Err::<(), _>(Error::msg("gone")))
                .is_err());
            assert!(!r.finish());
        }
        let s = String::from_utf8(buf).unwrap();
        assert_eq!(
            s,
            "\n== Setup ==\nSome words.\n 1. first\n      value 1\n 2. second\n      !! NOT AS EXPECTED: broke\n\
             # expect-dmar-fault\n 3. third\n      !! NOT AS EXPECTED: gone\nStopping here: cannot go on without: third.\n\
             \n2 of 3 steps did not behave as expected (marked !! above).\n"
        );
    }
}
