//! Subject names of the message contract, under a configurable prefix (`fx` by default).
//!
//! Kept in one place so the service, the tools and the tests cannot disagree on a subject.

use crate::tick::Pair;

/// The subjects of one deployment: `<prefix>.ticks.<PAIR>`, `<prefix>.pred.<PAIR>`, and so on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Subjects { prefix: "fx".into() }
    }
}

impl Subjects {
    /// Subjects under `prefix`.
    ///
    /// # Errors
    /// When the prefix is empty or contains whitespace or wildcards (it would subscribe to the wrong thing).
    pub fn new(prefix: &str) -> Result<Subjects, String> {
        let bad = prefix.is_empty()
            || prefix.starts_with('.')
            || prefix.ends_with('.')
            || prefix.contains("..")
            || prefix.chars().any(|c| c.is_whitespace() || c == '*' || c == '>');
        if bad {
            return Err(format!(
                "subject prefix `{prefix}`: dot-separated tokens without wildcards or spaces"
            ));
        }
        Ok(Subjects { prefix: prefix.into() })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn one(&self, kind: &str, pair: Pair) -> String {
        format!("{}.{kind}.{pair}", self.prefix)
    }

    fn all(&self, kind: &str) -> String {
        format!("{}.{kind}.>", self.prefix)
    }

    /// Ticks in: `<prefix>.ticks.<PAIR>`.
    pub fn ticks(&self, pair: Pair) -> String {
        self.one("ticks", pair)
    }
    /// Every pair's ticks: `<prefix>.ticks.>`.
    pub fn all_ticks(&self) -> String {
        self.all("ticks")
    }
    /// Factors in: `<prefix>.factors.<NAME>`.
    pub fn factor(&self, name: &str) -> String {
        format!("{}.factors.{name}", self.prefix)
    }
    /// Every factor: `<prefix>.factors.>`.
    pub fn all_factors(&self) -> String {
        self.all("factors")
    }
    /// Forecasts: `<prefix>.pred.<PAIR>`.
    pub fn pred(&self, pair: Pair) -> String {
        self.one("pred", pair)
    }
    /// Quarantined ticks: `<prefix>.quarantine.<PAIR>`.
    pub fn quarantine(&self, pair: Pair) -> String {
        self.one("quarantine", pair)
    }
    /// Quality scores: `<prefix>.quality.<PAIR>`.
    pub fn quality(&self, pair: Pair) -> String {
        self.one("quality", pair)
    }
    /// Drift statistics: `<prefix>.drift.<PAIR>`.
    pub fn drift(&self, pair: Pair) -> String {
        self.one("drift", pair)
    }
    /// Alarms and adaptations: `<prefix>.alert.<PAIR>`.
    pub fn alert(&self, pair: Pair) -> String {
        self.one("alert", pair)
    }
    /// Latest-forecast queries: `<prefix>.query.<PAIR>`.
    pub fn query(&self, pair: Pair) -> String {
        self.one("query", pair)
    }
    /// Status queries: `<prefix>.status.<PAIR>`.
    pub fn status(&self, pair: Pair) -> String {
        self.one("status", pair)
    }
    /// Business events in: `<prefix>.business.<PAIR>`.
    pub fn business(&self, pair: Pair) -> String {
        self.one("business", pair)
    }
    /// Every pair's business events: `<prefix>.business.*` (one token: the stats and quarantine subjects,
    /// longer, are not matched).
    pub fn all_business(&self) -> String {
        format!("{}.business.*", self.prefix)
    }
    /// Refused business events: `<prefix>.business.quarantine.<PAIR>`.
    pub fn business_quarantine(&self, pair: Pair) -> String {
        self.one("business.quarantine", pair)
    }
    /// Accepted business events in their masked form: `<prefix>.business.masked.<PAIR>` (for the data
    /// lake; two tokens after `business`, so serve's own `<prefix>.business.*` does not read them back).
    pub fn business_masked(&self, pair: Pair) -> String {
        self.one("business.masked", pair)
    }
    /// Business stats requests: `<prefix>.business.stats.<PAIR>`.
    pub fn business_stats(&self, pair: Pair) -> String {
        self.one("business.stats", pair)
    }
    /// The wildcard of a request endpoint, e.g. `<prefix>.query.*`.
    pub fn endpoint(&self, kind: &str) -> String {
        format!("{}.{kind}.*", self.prefix)
    }

    /// The last token of a subject under `<prefix>.<kind>.`, e.g. the pair of `fx.ticks.USDMXN`; `None` when
    /// the subject is not of that kind or has more tokens.
    pub fn token<'a>(&self, kind: &str, subject: &'a str) -> Option<&'a str> {
        let rest = subject.strip_prefix(self.prefix.as_str())?.strip_prefix('.')?;
        let rest = rest.strip_prefix(kind)?.strip_prefix('.')?;
        (!rest.is_empty() && !rest.contains('.')).then_some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tokens() {
        let s = Subjects::new("bank.fx").unwrap();
        let p = Pair::parse("USDMXN").unwrap();
        assert_eq!(s.ticks(p), "bank.fx.ticks.USDMXN");
        assert_eq!(s.all_ticks(), "bank.fx.ticks.>");
        assert_eq!(s.token("ticks", "bank.fx.ticks.USDMXN"), Some("USDMXN"));
        assert_eq!(s.token("ticks", "bank.fx.ticks.USDMXN.x"), None);
        assert_eq!(s.token("ticks", "bank.fx.pred.USDMXN"), None);
        assert_eq!(s.token("ticks", "fx.ticks.USDMXN"), None);
        assert_eq!(s.endpoint("query"), "bank.fx.query.*");
        assert_eq!(s.all_business(), "bank.fx.business.*");
        assert_eq!(s.business_stats(p), "bank.fx.business.stats.USDMXN");
        assert_eq!(s.token("business", "bank.fx.business.stats.USDMXN"), None);
        assert_eq!(
            s.token("business.stats", "bank.fx.business.stats.USDMXN"),
            Some("USDMXN")
        );
        for bad in ["", "fx.", ".fx", "f x", "fx.*", "a..b", ">"] {
            assert!(Subjects::new(bad).is_err(), "{bad:?}");
        }
    }
}
