//! A failure scenario (TOML): clients at a rate, tasks with a latency, and events that change
//! the tasks or what DNS says, at given times.
//!
//! ```toml
//! duration = "120s"
//! rate = 50                      # requests per second from clients
//! methods = { GET = 0.8, POST = 0.2 }
//! tasks = ["t1", "t2", "t3"]     # initially in DNS and healthy
//! latency = "20ms"               # default answer time of every task
//!
//! [[events]]
//! at = "30s"
//! task = "t2"
//! status = 500                   # or: latency = "3s" / hang = true / refuse = true / ok = true
//! [[events]]
//! at = "60s"
//! dns = ["t1", "t3", "t4"]       # what discovery returns from now on; dns_error = true for an outage
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// Longest scenario the lab runs (virtual time): a day of events is not a rehearsal.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Highest client rate: enough for a gateway replica's peak, bounded so a run stays seconds.
pub const MAX_RATE: f64 = 2000.0;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Shown in reports.
    #[serde(default)]
    pub description: Option<String>,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Requests per second, evenly spaced.
    pub rate: f64,
    /// Share of each method among the requests (normalised); default all GET.
    #[serde(default = "default_methods")]
    pub methods: BTreeMap<String, f64>,
    /// Tasks in DNS and healthy at the start.
    pub tasks: Vec<String>,
    /// Answer time of every task unless an event says otherwise.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Seed of every random choice (the balancer's picks, the breaker's jitter, the methods);
    /// `--seed` overrides it.
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub events: Vec<Event>,
}

fn default_methods() -> BTreeMap<String, f64> {
    BTreeMap::from([("GET".to_owned(), 1.0)])
}

/// One change at a time `at`: to a task (`task` with one of `status`, `latency`, `hang`,
/// `refuse`, `ok`), or to DNS (`dns`, `dns_error`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    #[serde(default)]
    pub task: Option<String>,
    /// The task answers this status (after its latency).
    #[serde(default)]
    pub status: Option<u16>,
    /// The task answers after this long.
    #[serde(default, with = "humantime_serde")]
    pub latency: Option<Duration>,
    /// The task accepts requests and never answers.
    #[serde(default)]
    pub hang: Option<bool>,
    /// The task refuses connections (stopped, or not started yet).
    #[serde(default)]
    pub refuse: Option<bool>,
    /// The task is back to normal: status 200 after the scenario's latency.
    #[serde(default)]
    pub ok: Option<bool>,
    /// What DNS answers from now on (tasks not seen before start healthy).
    #[serde(default)]
    pub dns: Option<Vec<String>>,
    /// DNS fails (`true`) or answers again (`false`).
    #[serde(default)]
    pub dns_error: Option<bool>,
}

/// What an event does, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Task(String, TaskChange),
    Dns(Vec<String>),
    DnsError(bool),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TaskChange {
    Status(u16),
    Latency(Duration),
    Hang,
    Refuse,
    Ok,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("scenario {path}: {message}")]
    Invalid { path: String, message: String },
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses and checks a scenario; `path` names it in errors.
    pub fn parse(path: &str, text: &str) -> Result<Self, ScenarioError> {
        let invalid = |message: String| ScenarioError::Invalid {
            path: path.to_owned(),
            message,
        };
        let scenario: Scenario = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let problems = scenario.problems();
        if !problems.is_empty() {
            return Err(invalid(problems.join("; ")));
        }
        Ok(scenario)
    }

    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            out.push(format!("duration: between 1s and {MAX_DURATION:?}"));
        }
        if !(self.rate > 0.0 && self.rate <= MAX_RATE) {
            out.push(format!("rate: above 0, at most {MAX_RATE}"));
        }
        if self.tasks.is_empty() {
            out.push("tasks: at least one".to_owned());
        }
        if self.methods.values().any(|w| !(*w >= 0.0 && w.is_finite()))
            || self.methods.values().sum::<f64>() <= 0.0
        {
            out.push("methods: shares must be >= 0 and not all 0".to_owned());
        }
        for m in self.methods.keys() {
            if http::Method::from_bytes(m.as_bytes()).is_err() {
                out.push(format!("methods: {m:?} is not a method"));
            }
        }
        for (i, e) in self.events.iter().enumerate() {
            if let Err(message) = e.change() {
                out.push(format!("events[{i}]: {message}"));
            }
            if e.at > self.duration {
                out.push(format!("events[{i}].at: after the scenario's end"));
            }
        }
        out
    }

    /// The events in time order (stable: events at the same time apply in file order).
    pub fn timeline(&self) -> Vec<(Duration, Change)> {
        let mut out: Vec<_> = self
            .events
            .iter()
            .filter_map(|e| Some((e.at, e.change().ok()?)))
            .collect();
        out.sort_by_key(|(at, _)| *at);
        out
    }

    /// Every task name the scenario mentions, in order of first mention.
    pub fn all_tasks(&self) -> Vec<String> {
        let mut out = self.tasks.clone();
        for e in &self.events {
            let names = e.task.iter().chain(e.dns.iter().flatten());
            for name in names {
                if !out.contains(name) {
                    out.push(name.clone());
                }
            }
        }
        out
    }

    /// The method for a draw in `0.0..1.0`.
    pub fn method_for(&self, draw: f64) -> http::Method {
        let total: f64 = self.methods.values().sum();
        let mut acc = 0.0;
        for (name, weight) in &self.methods {
            acc += weight / total;
            if draw < acc {
                return http::Method::from_bytes(name.as_bytes()).unwrap_or(http::Method::GET);
            }
        }
        self.methods
            .keys()
            .next_back()
            .and_then(|m| http::Method::from_bytes(m.as_bytes()).ok())
            .unwrap_or(http::Method::GET)
    }
}

impl Event {
    /// The one change this event makes, or why it is not one.
    pub fn change(&self) -> Result<Change, String> {
        let task_changes = [
            self.status.map(TaskChange::Status),
            self.latency.map(TaskChange::Latency),
            self.hang.filter(|h| *h).map(|_| TaskChange::Hang),
            self.refuse.filter(|r| *r).map(|_| TaskChange::Refuse),
            self.ok.filter(|o| *o).map(|_| TaskChange::Ok),
        ];
        let mut task_changes = task_changes.into_iter().flatten();
        let dns = self.dns.clone().map(Change::Dns);
        let dns_error = self.dns_error.map(Change::DnsError);
        match (
            &self.task,
            task_changes.next(),
            task_changes.next(),
            dns,
            dns_error,
        ) {
            (Some(task), Some(change), None, None, None) => {
                if let TaskChange::Status(s) = change
                    && !(100..=599).contains(&s)
                {
                    return Err(format!("status {s} is not an HTTP status"));
                }
                Ok(Change::Task(task.clone(), change))
            }
            (Some(_), None, ..) => {
                Err("a task event needs one of status, latency, hang, refuse, ok".to_owned())
            }
            (Some(_), Some(_), Some(_), ..) => {
                Err("one change per event (status, latency, hang, refuse or ok)".to_owned())
            }
            (None, None, _, Some(dns), None) => Ok(dns),
            (None, None, _, None, Some(e)) => Ok(e),
            (None, Some(_), ..) => {
                Err("status, latency, hang, refuse and ok need a task".to_owned())
            }
            _ => Err(
                "an event changes a task (task = ...) or DNS (dns = [...] or dns_error)".to_owned(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        duration = "120s"
        rate = 50
        methods = { GET = 0.8, POST = 0.2 }
        tasks = ["t1", "t2", "t3"]
        latency = "20ms"

        [[events]]
        at = "60s"
        dns = ["t1", "t3", "t4"]
        [[events]]
        at = "30s"
        task = "t2"
        status = 500
    "#;

    #[test]
    fn the_readme_example_parses_into_a_timeline() {
        let s = Scenario::parse("s.toml", EXAMPLE).unwrap();
        assert_eq!(s.duration, Duration::from_secs(120));
        assert_eq!(
            s.timeline(),
            [
                (
                    Duration::from_secs(30),
                    Change::Task("t2".into(), TaskChange::Status(500))
                ),
                (
                    Duration::from_secs(60),
                    Change::Dns(vec!["t1".into(), "t3".into(), "t4".into()])
                ),
            ]
        );
        assert_eq!(s.all_tasks(), ["t1", "t2", "t3", "t4"]);
        assert_eq!(s.method_for(0.1), http::Method::GET);
        assert_eq!(s.method_for(0.9), http::Method::POST);
    }

    #[test]
    fn mistakes_are_named_all_at_once() {
        let bad = r#"
            duration = "0s"
            rate = 0
            tasks = []
            latency = "1ms"
            [[events]]
            at = "1s"
            task = "t1"
            [[events]]
            at = "1s"
            task = "t1"
            status = 500
            hang = true
            [[events]]
            at = "1s"
            status = 999
        "#;
        let err = Scenario::parse("bad.toml", bad).unwrap_err().to_string();
        for part in [
            "bad.toml",
            "duration",
            "rate",
            "tasks",
            "events[0]: a task event needs one",
            "events[1]: one change per event",
            "events[2]: status, latency",
        ] {
            assert!(err.contains(part), "{part}: {err}");
        }
        let unknown = Scenario::parse(
            "u.toml",
            "duration = \"1s\"\nrate = 1\ntasks = [\"a\"]\nlatency = \"1ms\"\nlatnecy = 1",
        )
        .unwrap_err()
        .to_string();
        assert!(unknown.contains("latnecy"), "{unknown}");
    }
}
