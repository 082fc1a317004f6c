//! The body of `POST /routes/{route}/rollout`, checked into a [`Plan`].

use std::time::Duration;

use serde::Deserialize;

use super::guard::Guard;
use crate::config::{HashOn, parse_duration};

/// Default percentages of traffic on the new side, step by step.
pub const DEFAULT_STEPS: [u32; 4] = [5, 25, 50, 100];
/// Default time each step is held.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const MIN_INTERVAL: Duration = Duration::from_millis(50);
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Why a rollout request was refused (answered with 400).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    #[error(
        "expected a JSON body like {{\"to\": \"green\", \"steps\": [5, 25, 50, 100], \"interval\": \"10s\", \"guard\": {{\"max_error_rate\": 0.05, \"max_p99_ratio\": 2.0, \"min_requests\": 20}}}}: {0}"
    )]
    Json(String),
    #[error("`to` must name the pool to roll out to")]
    NoTarget,
    #[error("`steps` must not be empty")]
    NoSteps,
    #[error("step {0}% is out of range: each step is a percentage from 1 to 100")]
    StepRange(u32),
    #[error("steps must increase: {0}% follows {1}%")]
    StepOrder(u32, u32),
    #[error("the last step must be 100 (the rollout ends with all traffic on `to`), not {0}")]
    LastStep(u32),
    #[error("`interval`: {0}")]
    Interval(String),
    #[error("`interval` must be between 50ms and 24h")]
    IntervalRange,
    #[error("`guard.max_error_rate` must be between 0 and 1")]
    ErrorRate,
    #[error("`guard.max_p99_ratio` must be at least 1")]
    P99Ratio,
    #[error("`sticky`: {0}")]
    Sticky(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    to: String,
    steps: Option<Vec<u32>>,
    interval: Option<String>,
    sticky: Option<String>,
    #[serde(default)]
    guard: GuardBody,
    #[serde(default)]
    force: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GuardBody {
    max_error_rate: Option<f64>,
    max_p99_ratio: Option<f64>,
    min_requests: Option<u64>,
}

/// A validated rollout request.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The pool traffic moves to.
    pub to: String,
    /// Percent of traffic on `to` at each step; increasing, ending at 100.
    pub steps: Vec<u32>,
    /// How long each step is held before it is judged.
    pub interval: Duration,
    /// Keeps each client on one side during the split.
    pub sticky: Option<HashOn>,
    /// When a step counts as broken.
    pub guard: Guard,
    /// Start even though `to` has no usable backend right now.
    pub force: bool,
}

impl Plan {
    /// Parses and checks a request body.
    pub fn parse(body: &[u8]) -> Result<Plan, SpecError> {
        let body: Body =
            serde_json::from_slice(body).map_err(|e| SpecError::Json(e.to_string()))?;
        if body.to.is_empty() {
            return Err(SpecError::NoTarget);
        }
        let steps = body.steps.unwrap_or_else(|| DEFAULT_STEPS.to_vec());
        let Some(&last) = steps.last() else {
            return Err(SpecError::NoSteps);
        };
        let mut previous = 0;
        for &step in &steps {
            if !(1..=100).contains(&step) {
                return Err(SpecError::StepRange(step));
            }
            if step <= previous {
                return Err(SpecError::StepOrder(step, previous));
            }
            previous = step;
        }
        if last != 100 {
            return Err(SpecError::LastStep(last));
        }
        let interval = match body.interval.as_deref() {
            None => DEFAULT_INTERVAL,
            Some(text) => parse_duration(text).map_err(SpecError::Interval)?,
        };
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
            return Err(SpecError::IntervalRange);
        }
        let defaults = Guard::default();
        let guard = Guard {
            max_error_rate: body.guard.max_error_rate.unwrap_or(defaults.max_error_rate),
            max_p99_ratio: body.guard.max_p99_ratio,
            min_requests: body.guard.min_requests.unwrap_or(defaults.min_requests),
        };
        if !(0.0..=1.0).contains(&guard.max_error_rate) {
            return Err(SpecError::ErrorRate);
        }
        if guard.max_p99_ratio.is_some_and(|r| r.is_nan() || r < 1.0) {
            return Err(SpecError::P99Ratio);
        }
        let sticky = body
            .sticky
            .as_deref()
            .map(crate::traffic::parse_sticky)
            .transpose()
            .map_err(SpecError::Sticky)?;
        Ok(Plan {
            to: body.to,
            steps,
            interval,
            sticky,
            guard,
            force: body.force,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_full_form() {
        let plan = Plan::parse(br#"{"to": "green"}"#).unwrap();
        assert_eq!(plan.steps, DEFAULT_STEPS);
        assert_eq!(plan.interval, DEFAULT_INTERVAL);
        assert_eq!(plan.guard, Guard::default());
        assert!(!plan.force);
        assert!(
            Plan::parse(br#"{"to": "green", "force": true}"#)
                .unwrap()
                .force
        );
        let plan = Plan::parse(
            br#"{"to": "green", "steps": [10, 100], "interval": "500ms",
                 "guard": {"max_error_rate": 0.01, "max_p99_ratio": 2.0, "min_requests": 5}}"#,
        )
        .unwrap();
        assert_eq!(plan.interval, Duration::from_millis(500));
        assert_eq!(plan.guard.max_p99_ratio, Some(2.0));
        assert_eq!(plan.guard.min_requests, 5);
    }

    #[test]
    fn refuses_bad_input_with_a_reason() {
        let err = |body: &str| Plan::parse(body.as_bytes()).unwrap_err();
        assert_eq!(err(r#"{"to": "g", "steps": []}"#), SpecError::NoSteps);
        assert_eq!(
            err(r#"{"to": "g", "steps": [50, 20, 100]}"#),
            SpecError::StepOrder(20, 50)
        );
        assert_eq!(
            err(r#"{"to": "g", "steps": [0, 100]}"#),
            SpecError::StepRange(0)
        );
        assert_eq!(
            err(r#"{"to": "g", "steps": [5, 50]}"#),
            SpecError::LastStep(50)
        );
        assert_eq!(
            err(r#"{"to": "g", "interval": "1ms"}"#),
            SpecError::IntervalRange
        );
        assert!(matches!(
            err(r#"{"to": "g", "interval": "ten"}"#),
            SpecError::Interval(_)
        ));
        assert_eq!(
            err(r#"{"to": "g", "guard": {"max_error_rate": 2}}"#),
            SpecError::ErrorRate
        );
        assert!(matches!(
            err(r#"{"to": "g", "speed": 1}"#),
            SpecError::Json(_)
        ));
    }
}
