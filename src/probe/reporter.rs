//! The report: a one-line verdict first, then one line per check and one
//! per diagnosis, or with `--json` one document `{"verdict", "ok",
//! "diagnoses", "checks"}`.

use super::diagnosis::Diagnosis;
use super::report::Check;
use super::verdict::verdict;

/// Collects the checks; [`Reporter::finish`] prints them after the verdict.
pub struct Reporter {
    json: bool,
    checks: Vec<Check>,
}

impl Reporter {
    pub fn new(json: bool) -> Reporter {
        Reporter {
            json,
            checks: Vec::new(),
        }
    }

    pub fn add(&mut self, c: Check) {
        self.checks.push(c);
    }

    pub fn checks(&self) -> &[Check] {
        &self.checks
    }

    /// Prints the verdict, the checks and the diagnoses; true when no check
    /// failed. A reader that stops early (`ternd probe URL | head -1` for the
    /// verdict) is fine: write errors are ignored, the exit code still tells.
    pub fn finish(self, diagnoses: &[Diagnosis]) -> bool {
        use std::fmt::Write as _;
        use std::io::Write as _;
        let ok = self.checks.iter().all(Check::ok);
        let verdict = verdict(&self.checks, diagnoses);
        let mut out = String::new();
        if self.json {
            let doc = serde_json::json!({
                "verdict": verdict,
                "ok": ok,
                "diagnoses": diagnoses.iter().map(Diagnosis::to_json).collect::<Vec<_>>(),
                "checks": self.checks.iter().map(Check::to_json).collect::<Vec<_>>(),
            });
            let _ = writeln!(out, "{doc}");
        } else {
            let _ = writeln!(out, "VERDICT: {verdict}");
            for c in &self.checks {
                let _ = writeln!(out, "{}", c.to_line());
            }
            for d in diagnoses {
                let _ = writeln!(out, "{}", d.to_line());
            }
            let _ = match ok {
                true => writeln!(out, "all {} check(s) passed", self.checks.len()),
                false => writeln!(out, "some checks FAILED"),
            };
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush());
        ok
    }
}
