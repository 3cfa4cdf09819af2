//! The table of `cargo xtask bench`: each measure, the reference value, ours, the limit (the
//! least it could take here, where one is known) and the goal.

use std::time::Duration;

/// One line of the table: what, the reference value, ours, and the goal on ours / reference.
pub(super) struct Row {
    pub(super) what: String,
    pub(super) reference: Option<Value>,
    pub(super) ours: Option<Value>,
    /// At most this ratio (ours / reference), or an absolute limit when there is no reference.
    pub(super) goal: Option<Goal>,
    /// The least this could take here (e.g. the registry round trips of a re-tag), if known.
    pub(super) limit: Option<Value>,
    pub(super) note: String,
}

#[derive(Clone, Copy)]
pub(super) enum Value {
    Time(Duration),
    Bytes(u64),
}

impl Value {
    fn number(self) -> f64 {
        match self {
            Value::Time(d) => d.as_secs_f64(),
            Value::Bytes(b) => b as f64,
        }
    }

    pub(super) fn show(self) -> String {
        match self {
            Value::Time(d) if d < Duration::from_secs(1) => format!("{:.3}s", d.as_secs_f64()),
            Value::Time(d) => format!("{:.1}s", d.as_secs_f64()),
            Value::Bytes(b) => format!("{:.1} MB", b as f64 / 1e6),
        }
    }
}

#[derive(Clone, Copy)]
pub(super) enum Goal {
    Ratio(f64),
    Below(Duration),
}

pub(super) fn row(
    what: &str,
    reference: Option<Value>,
    ours: Option<Value>,
    goal: Option<Goal>,
) -> Row {
    Row {
        what: what.to_string(),
        reference,
        ours,
        goal,
        limit: None,
        note: String::new(),
    }
}

pub(super) fn skipped(what: &str, why: String) -> Row {
    Row {
        note: format!("skipped: {why}"),
        ..row(what, None, None, None)
    }
}

pub(super) fn render(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<52} {:>10} {:>10} {:>7} {:>9} {:>9}  {}\n",
        "measure", "reference", "xtask", "ratio", "limit", "goal", "verdict"
    );
    for row in rows {
        let show = |v: Option<Value>| v.map_or("-".to_string(), Value::show);
        let ratio = match (row.reference, row.ours) {
            (Some(r), Some(o)) if r.number() > 0.0 => Some(o.number() / r.number()),
            _ => None,
        };
        let goal = match row.goal {
            Some(Goal::Ratio(r)) => format!("<= {r:.2}x"),
            Some(Goal::Below(d)) => format!("< {}", Value::Time(d).show()),
            None => "-".into(),
        };
        let verdict = match (row.goal, ratio, row.ours) {
            (Some(Goal::Ratio(r)), Some(ratio), _) => verdict(ratio <= r),
            (Some(Goal::Below(d)), _, Some(Value::Time(t))) => verdict(t < d),
            _ => "",
        };
        let note = if row.note.is_empty() {
            verdict.to_string()
        } else if verdict.is_empty() {
            row.note.clone()
        } else {
            format!("{verdict} ({})", row.note)
        };
        out.push_str(&format!(
            "{:<52} {:>10} {:>10} {:>7} {:>9} {:>9}  {}\n",
            row.what,
            show(row.reference),
            show(row.ours),
            ratio.map_or("-".into(), |r| format!("{r:.2}x")),
            show(row.limit),
            goal,
            note
        ));
    }
    out
}

pub(super) fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_ratios_goals_and_skips() {
        let rows = vec![
            Row {
                limit: Some(Value::Time(Duration::from_secs(5))),
                ..row(
                    "warm",
                    Some(Value::Time(Duration::from_secs(100))),
                    Some(Value::Time(Duration::from_secs(20))),
                    Some(Goal::Ratio(0.25)),
                )
            },
            row(
                "help",
                None,
                Some(Value::Time(Duration::from_millis(400))),
                Some(Goal::Below(Duration::from_millis(300))),
            ),
            skipped("cargo", "no cargo".into()),
        ];
        let table = render(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[1].contains("0.20x") && lines[1].contains(" 5.0s ") && lines[1].ends_with("met"),
            "{table}"
        );
        assert!(
            lines[2].contains("0.400s") && lines[2].ends_with("MISSED"),
            "{table}"
        );
        assert!(lines[3].ends_with("skipped: no cargo"), "{table}");
    }
}
