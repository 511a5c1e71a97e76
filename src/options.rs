//! The trailing options string every function takes: `'bins=4, method=ntile'`.
//!
//! Table functions in DataFusion take positional arguments only, so a single
//! convention that works everywhere is a last argument holding `key=value`
//! pairs separated by commas. Lists inside a value are separated by `|`
//! (`r_cuts=30|90|180|365`). Keys are case-insensitive; values keep their case.
//! Unknown keys, repeated keys and malformed values are plan errors that name
//! the function, the key, the value and the keys it accepts.

use std::collections::BTreeMap;

use datafusion::common::{DataFusionError, Result, plan_datafusion_err};

/// Parsed `key=value` options of one function call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    function: &'static str,
    values: BTreeMap<String, String>,
}

impl Options {
    /// Parses `text` for `function`, accepting only the keys in `allowed`.
    pub fn parse(function: &'static str, text: &str, allowed: &[&str]) -> Result<Self> {
        let mut values = BTreeMap::new();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(plan_datafusion_err!(
                    "{function}: option '{pair}' is not of the form key=value; \
                     got '{text}'. Write options as 'key=value, key=value' \
                     (accepted keys: {}).",
                    allowed.join(", ")
                ));
            };
            let key = key.trim().to_ascii_lowercase();
            if !allowed.contains(&key.as_str()) {
                return Err(plan_datafusion_err!(
                    "{function}: unknown option '{key}' in '{text}'. \
                     Accepted keys: {}.",
                    allowed.join(", ")
                ));
            }
            if values
                .insert(key.clone(), value.trim().to_string())
                .is_some()
            {
                return Err(plan_datafusion_err!(
                    "{function}: option '{key}' is given twice in '{text}'. \
                     Keep one of them."
                ));
            }
        }
        Ok(Self { function, values })
    }

    /// Options from key/value pairs given one by one (e.g. command-line flags),
    /// whose values may hold commas.
    pub fn from_pairs(
        function: &'static str,
        pairs: impl IntoIterator<Item = (&'static str, String)>,
        allowed: &[&str],
    ) -> Result<Self> {
        let mut values = BTreeMap::new();
        for (key, value) in pairs {
            if !allowed.contains(&key) {
                return Err(plan_datafusion_err!(
                    "{function}: unknown option '{key}'. Accepted keys: {}.",
                    allowed.join(", ")
                ));
            }
            values.insert(key.to_string(), value);
        }
        Ok(Self { function, values })
    }

    /// The raw value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// An integer option within `min..=max`, or `default` when absent.
    pub fn integer(
        &self,
        key: &str,
        default: usize,
        min: usize,
        max: usize,
    ) -> Result<usize> {
        let Some(raw) = self.get(key) else {
            return Ok(default);
        };
        match raw.parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.bad_value(
                key,
                raw,
                &format!("a whole number from {min} to {max}"),
            )),
        }
    }

    /// One of `choices` (case-insensitive), or `default` when absent.
    pub fn choice(
        &self,
        key: &str,
        default: &'static str,
        choices: &[&'static str],
    ) -> Result<&'static str> {
        let Some(raw) = self.get(key) else {
            return Ok(default);
        };
        choices
            .iter()
            .find(|c| c.eq_ignore_ascii_case(raw))
            .copied()
            .ok_or_else(|| {
                self.bad_value(key, raw, &format!("one of {}", choices.join(", ")))
            })
    }

    /// A `|`-separated list of finite numbers, if given.
    pub fn numbers(&self, key: &str) -> Result<Option<Vec<f64>>> {
        let Some(raw) = self.get(key) else {
            return Ok(None);
        };
        raw.split('|')
            .map(|n| n.trim().parse::<f64>().ok().filter(|v| v.is_finite()))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| {
                self.bad_value(
                    key,
                    raw,
                    "finite numbers separated by '|', e.g. 30|90|180",
                )
            })
    }

    /// A non-negative decimal number as an exact fraction `(numerator,
    /// denominator)`, so thresholds can be compared as integer counts:
    /// `0.28` is `(28, 100)`, and `7 / 25 >= 0.28` holds exactly.
    pub fn ratio(&self, key: &str) -> Result<Option<(u64, u64)>> {
        let Some(raw) = self.get(key) else {
            return Ok(None);
        };
        let bad =
            || self.bad_value(key, raw, "a non-negative decimal number such as 0.25");
        let (whole, fraction) = raw.split_once('.').unwrap_or((raw, ""));
        if whole.is_empty() && fraction.is_empty()
            || fraction.len() > 12
            || !whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let den = 10u64.pow(fraction.len() as u32);
        let digits = format!("{whole}{fraction}");
        let num = digits.trim_start_matches('0');
        let num = if num.is_empty() {
            0
        } else {
            num.parse::<u64>().map_err(|_| bad())?
        };
        Ok(Some((num, den)))
    }

    /// The error for a value that does not fit its key.
    pub fn bad_value(&self, key: &str, value: &str, expected: &str) -> DataFusionError {
        plan_datafusion_err!(
            "{}: option {key} must be {expected}; got '{value}'.",
            self.function
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_lists_and_defaults() {
        let o = Options::parse(
            "f",
            " bins=4 , METHOD=Ntile, r_cuts=1|2|3",
            &["bins", "method", "r_cuts"],
        )
        .unwrap();
        assert_eq!(o.integer("bins", 5, 2, 9).unwrap(), 4);
        assert_eq!(
            o.choice("method", "quantile", &["quantile", "ntile"])
                .unwrap(),
            "ntile"
        );
        assert_eq!(o.numbers("r_cuts").unwrap(), Some(vec![1.0, 2.0, 3.0]));
        assert_eq!(
            Options::parse("f", "", &[])
                .unwrap()
                .integer("bins", 5, 2, 9)
                .unwrap(),
            5
        );
    }

    #[test]
    fn ratios_are_exact_fractions() {
        let o = Options::parse(
            "f",
            "a=0.28, b=1, c=.5, d=2.50, e=-1, g=1e3",
            &["a", "b", "c", "d", "e", "g"],
        )
        .unwrap();
        assert_eq!(o.ratio("a").unwrap(), Some((28, 100)));
        assert_eq!(o.ratio("b").unwrap(), Some((1, 1)));
        assert_eq!(o.ratio("c").unwrap(), Some((5, 10)));
        assert_eq!(o.ratio("d").unwrap(), Some((250, 100)));
        assert!(o.ratio("e").is_err());
        assert!(o.ratio("g").is_err());
        assert_eq!(o.ratio("missing").unwrap(), None);
    }

    #[test]
    fn rejects_unknown_repeated_and_malformed() {
        let err = |t: &str| Options::parse("f", t, &["bins"]).unwrap_err().to_string();
        assert!(err("bins").contains("key=value"));
        assert!(err("colour=red").contains("unknown option 'colour'"));
        assert!(err("bins=3, bins=4").contains("given twice"));
        let o = Options::parse("f", "bins=12", &["bins"]).unwrap();
        assert!(
            o.integer("bins", 5, 2, 9)
                .unwrap_err()
                .to_string()
                .contains("from 2 to 9")
        );
        let o = Options::parse("f", "bins=1|x", &["bins"]).unwrap();
        assert!(o.numbers("bins").unwrap_err().to_string().contains("'1|x'"));
    }
}
