//! The table the checker prints: bench, measured, budget, headroom, verdict.

/// How a row came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Over budget.
    Fail,
    /// No measurement for a budgeted bench (not run, or renamed): a failure too.
    Missing,
}

/// One line of the table.
pub struct Row {
    pub section: &'static str,
    pub name: String,
    pub measured: String,
    pub budget: String,
    /// `(budget − measured) / budget`, when both are known.
    pub headroom: Option<f64>,
    pub verdict: Verdict,
    pub note: String,
}

impl Row {
    /// A row comparing `measured` with `budget` (lower is better).
    pub fn compare(
        section: &'static str,
        name: &str,
        measured: f64,
        budget: f64,
        fmt: impl Fn(f64) -> String,
    ) -> Self {
        Self {
            section,
            name: name.to_string(),
            measured: fmt(measured),
            budget: fmt(budget),
            headroom: Some(if budget > 0.0 {
                (budget - measured) / budget
            } else if measured <= 0.0 {
                0.0
            } else {
                -1.0
            }),
            verdict: if measured <= budget {
                Verdict::Ok
            } else {
                Verdict::Fail
            },
            note: String::new(),
        }
    }

    /// A budgeted bench with nothing measured.
    pub fn missing(section: &'static str, name: &str, budget: String, why: &str) -> Self {
        Self {
            section,
            name: name.to_string(),
            measured: "–".into(),
            budget,
            headroom: None,
            verdict: Verdict::Missing,
            note: why.to_string(),
        }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Ok => "ok",
        Verdict::Fail => "OVER BUDGET",
        Verdict::Missing => "MISSING",
    }
}

fn headroom(h: Option<f64>) -> String {
    h.map_or("–".into(), |h| format!("{:.1} %", h * 100.0))
}

/// Prints the rows as a Markdown table (for the README).
pub fn print_markdown(rows: &[Row]) {
    println!("| bench | measured | budget | headroom | |");
    println!("|---|---:|---:|---:|---|");
    for r in rows {
        let note = if r.note.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.note)
        };
        println!(
            "| `{}/{}` | {} | {} | {} | {}{} |",
            r.section,
            r.name,
            r.measured,
            r.budget,
            headroom(r.headroom),
            verdict(r.verdict),
            note
        );
    }
}

/// Prints the rows as a table, one section after another.
pub fn print(rows: &[Row]) {
    let head = ["bench", "measured", "budget", "headroom", ""];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                format!("{}/{}", r.section, r.name),
                r.measured.clone(),
                r.budget.clone(),
                headroom(r.headroom),
                verdict(r.verdict).into(),
            ]
        })
        .collect();
    let mut width = head.map(|h| h.chars().count());
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let line = |c: &[String; 5]| {
        let pad = |s: &str, w: usize| " ".repeat(w.saturating_sub(s.chars().count()));
        format!(
            "{}{}  {}{}  {}{}  {}{}  {}",
            c[0],
            pad(&c[0], width[0]),
            pad(&c[1], width[1]),
            c[1],
            pad(&c[2], width[2]),
            c[2],
            pad(&c[3], width[3]),
            c[3],
            c[4]
        )
    };
    println!("{}", line(&head.map(String::from)).trim_end());
    let mut section = "";
    for (r, c) in rows.iter().zip(&cells) {
        if r.section != section && !section.is_empty() {
            println!();
        }
        section = r.section;
        let mut l = line(c);
        if !r.note.is_empty() {
            l.push_str("  ");
            l.push_str(&r.note);
        }
        println!("{}", l.trim_end());
    }
}
