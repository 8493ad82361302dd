//! `freezewatch check TRACE`: the assertions on a recorded trace; and the verdict step `run`
//! shares with it, so both judge a trace the same way.
use std::path::Path;

use freeze_model::{
    assertions::{Assertion, Status},
    correlate,
    report::Streamed,
    verdicts,
};

use super::{
    args::{AssertArgs, load_report, print_json},
    exit::{Exit, Failure, Outcome},
};

pub fn command(trace: &Path, args: &AssertArgs) -> Outcome {
    let list = args.collect().map_err(Failure::input)?;
    let kinds = AssertArgs::finding_kinds(&list);
    let streamed = load_report(trace, &correlate::Options::with_long_freeze(args.long_freeze), Some(&kinds))?;
    judge(&streamed, &list, args, &trace.display().to_string())
}

/// Evaluates, prints and writes JUnit: `Ok` when every assertion holds, `Failed` when one does
/// not, `Tracer` when one is unproven (unless `--allow-partial`).
pub fn judge(streamed: &Streamed, list: &[Assertion], args: &AssertArgs, suite: &str) -> Outcome {
    let rep = &streamed.report;
    let verdicts = verdicts::evaluate(rep, list);
    let command_exit = streamed.footer.as_ref().and_then(|f| f.command_exit);
    let passed = verdicts.iter().all(|v| v.passed);
    let unproven = verdicts.iter().filter(|v| v.status == Status::Unproven).count();
    let failed = verdicts.iter().any(|v| v.status == Status::Fail);
    if args.json {
        print_json(&verdicts::Summary {
            passed,
            unproven,
            verdicts: &verdicts,
            lost_events: rep.lost_events,
            complete: rep.complete,
            command_exit,
        })?;
    } else {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        verdicts::human(&mut out, &verdicts, command_exit)
            .and_then(|()| std::io::Write::flush(&mut out))
            .map_err(|e| Failure::failed(format!("cannot write the verdicts: {e}")))?;
    }
    if let Some(path) = &args.junit {
        let seconds = streamed.footer.as_ref().map_or(0.0, |f| f.duration_ms as f64 / 1e3);
        verdicts::write_junit(path, &verdicts, suite, seconds)
            .map_err(|e| Failure::input(format!("cannot write {}: {e}", path.display())))?;
    }
    if failed {
        return Ok(Exit::Failed);
    }
    if unproven > 0 && !args.allow_partial {
        return Err(Failure {
            exit: Exit::Tracer,
            message: format!(
                "{unproven} assertion(s) unproven: a hook they need did not attach (`needs` above \
                 says which and why); --allow-partial accepts that"
            ),
        });
    }
    Ok(Exit::Ok)
}
