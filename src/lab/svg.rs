//! The run as a picture: answers per second (stacked by outcome), latency, the breaker's state
//! and each task's health, on one time axis. Plain SVG, written by hand: a few rectangles and
//! two polylines need no drawing library.

use std::fmt::Write as _;

use super::report::Report;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 110.0;
const RIGHT: f64 = 20.0;
const BARS: f64 = 150.0;
const LATENCY: f64 = 90.0;
const BAND: f64 = 16.0;

/// Outcome colours, bottom to top of each bar.
const OUTCOMES: [(&str, &str); 6] = [
    ("ok", "#43a047"),
    ("5xx from task", "#f48fb1"),
    ("502", "#e53935"),
    ("503 no task", "#8d6e63"),
    ("503 open", "#fb8c00"),
    ("504", "#8e24aa"),
];

pub fn render(report: &Report) -> String {
    let n = report.seconds.len().max(1) as f64;
    let plot = WIDTH - LEFT - RIGHT;
    let step = plot / n;
    let x = |t: f64| LEFT + t * step;
    let top_bars = 48.0;
    let top_latency = top_bars + BARS + 24.0;
    let top_breaker = top_latency + LATENCY + 24.0;
    let top_tasks = top_breaker + BAND + 8.0;
    let height = top_tasks + report.tasks.len() as f64 * (BAND + 2.0) + 40.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        out,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    let title = format!(
        "{} / {}{}",
        escape(&report.config),
        escape(&report.upstream),
        report
            .scenario
            .as_deref()
            .map(|s| format!(": {}", escape(s)))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{title}</text>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="32">{}</text>"#,
        escape(&report.summary_line())
    );

    // Answers per second, stacked by outcome.
    let max = report
        .seconds
        .iter()
        .map(|s| s.requests)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    label(&mut out, top_bars + BARS / 2.0, "requests/s");
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="end">{max}</text>"#,
        LEFT - 4.0,
        top_bars + 8.0
    );
    for s in &report.seconds {
        let parts = [
            s.ok,
            s.task_error,
            s.bad_gateway,
            s.no_task,
            s.circuit_open,
            s.timeout,
        ];
        let mut y = top_bars + BARS;
        for (count, (_, colour)) in parts.iter().zip(OUTCOMES) {
            if *count == 0 {
                continue;
            }
            let h = *count as f64 / max * BARS;
            y -= h;
            let _ = writeln!(
                out,
                r#"<rect x="{:.2}" y="{y:.2}" width="{:.2}" height="{h:.2}" fill="{colour}"/>"#,
                x(s.t as f64),
                step.max(0.5)
            );
        }
    }
    let mut lx = LEFT;
    for (name, colour) in OUTCOMES {
        let _ = writeln!(
            out,
            r#"<rect x="{lx}" y="{}" width="10" height="10" fill="{colour}"/><text x="{}" y="{}">{name}</text>"#,
            top_bars - 12.0,
            lx + 13.0,
            top_bars - 3.0
        );
        lx += 95.0;
    }

    // Latency: p50 and p99 of the requests that arrived in each second.
    let lat_max = report
        .seconds
        .iter()
        .filter_map(|s| s.p99_ms)
        .fold(1.0_f64, f64::max);
    label(&mut out, top_latency + LATENCY / 2.0, "latency ms");
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="end">{lat_max:.0}</text>"#,
        LEFT - 4.0,
        top_latency + 8.0
    );
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top_latency}" width="{plot}" height="{LATENCY}" fill="none" stroke="#dddddd"/>"##
    );
    for (pick, colour) in [(0, "#90caf9"), (1, "#1565c0")] {
        let points: Vec<String> = report
            .seconds
            .iter()
            .filter_map(|s| {
                let v = if pick == 0 { s.p50_ms } else { s.p99_ms }?;
                let y = top_latency + LATENCY - v / lat_max * LATENCY;
                Some(format!("{:.2},{y:.2}", x(s.t as f64 + 0.5)))
            })
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="{}" y="{}" fill="#1565c0">p99</text><text x="{}" y="{}" fill="#90caf9">p50</text>"##,
        LEFT + 4.0,
        top_latency + 12.0,
        LEFT + 30.0,
        top_latency + 12.0
    );

    // The breaker's state, then each task's health, one row each.
    label(&mut out, top_breaker + BAND - 4.0, "breaker");
    for s in &report.seconds {
        let colour = match s.state.as_ref().map(|st| st.breaker) {
            Some("open") => "#e53935",
            Some("half_open") => "#fdd835",
            Some(_) => "#c8e6c9",
            None => "#eeeeee",
        };
        cell(&mut out, x(s.t as f64), top_breaker, step, colour);
    }
    for (i, task) in report.tasks.iter().enumerate() {
        let y = top_tasks + i as f64 * (BAND + 2.0);
        label(&mut out, y + BAND - 4.0, &format!("task {task}"));
        for s in &report.seconds {
            let colour = match s.state.as_ref().and_then(|st| st.tasks.chars().nth(i)) {
                Some('H') => "#66bb6a",
                Some('U') => "#ffa726",
                Some('E') => "#e53935",
                _ => "#eeeeee",
            };
            cell(&mut out, x(s.t as f64), y, step, colour);
        }
    }
    let axis = top_tasks + report.tasks.len() as f64 * (BAND + 2.0) + 14.0;
    let every = [1, 5, 10, 30, 60, 120, 300, 600]
        .into_iter()
        .find(|e| n / *e as f64 <= 12.0)
        .unwrap_or(600);
    for t in (0..=report.seconds.len()).step_by(every) {
        let _ = writeln!(
            out,
            r#"<text x="{:.2}" y="{axis}" text-anchor="middle">{t}s</text>"#,
            x(t as f64)
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="{}" fill="#555555">breaker: green closed, yellow half-open, red open. tasks: green healthy, orange failing probes, red ejected, grey not in DNS</text>"##,
        axis + 16.0
    );
    out.push_str("</svg>\n");
    out
}

/// One second of a state row (the breaker's, a task's).
fn cell(out: &mut String, x: f64, y: f64, width: f64, colour: &str) {
    let _ = writeln!(
        out,
        r#"<rect x="{x:.2}" y="{y}" width="{:.2}" height="{BAND}" fill="{colour}"/>"#,
        width.max(0.5)
    );
}

fn label(out: &mut String, y: f64, text: &str) {
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{y}" text-anchor="end">{}</text>"#,
        LEFT - 8.0,
        escape(text)
    );
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
