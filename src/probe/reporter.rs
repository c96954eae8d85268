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

    /// Prints the verdict, the checks and the diagnoses; true when no check failed.
    pub fn finish(self, diagnoses: &[Diagnosis]) -> bool {
        use std::io::Write as _;
        let ok = self.checks.iter().all(Check::ok);
        let verdict = verdict(&self.checks, diagnoses);
        if self.json {
            println!(
                "{}",
                serde_json::json!({
                    "verdict": verdict,
                    "ok": ok,
                    "diagnoses": diagnoses.iter().map(Diagnosis::to_json).collect::<Vec<_>>(),
                    "checks": self.checks.iter().map(Check::to_json).collect::<Vec<_>>(),
                })
            );
        } else {
            println!("VERDICT: {verdict}");
            for c in &self.checks {
                println!("{}", c.to_line());
            }
            for d in diagnoses {
                println!("{}", d.to_line());
            }
            if ok {
                println!("all {} check(s) passed", self.checks.len());
            } else {
                println!("some checks FAILED");
            }
        }
        let _ = std::io::stdout().flush();
        ok
    }
}
