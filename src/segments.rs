//! Segment maps: ordered rules that name each cell of the R x F x M score cube.
//!
//! A map is data, written in one small rule language that the built-in maps
//! use too:
//!
//! ```text
//! Champions: r4-5 f4-5 m4-5; Loyal: r>=2 f>=3 m>=3; Others: *
//! ```
//!
//! Rules are separated by `;` (or new lines) and checked in order; the first
//! rule that matches a cell names it. A rule is `name: conditions`. A condition
//! is a dimension letter (`r`, `f`, `m`) with `N`, `N-M`, `=N`, `<N`, `<=N`,
//! `>N` or `>=N`; several conditions must all hold, and a dimension without a
//! condition matches any score. Instead of conditions a rule may list exact
//! cells as three-digit codes (`334 443 444`, R then F then M), or `*` (or
//! nothing) to match every cell. A cell no rule matches is named `Other`.
//! [`SegmentMap::check`] lists rules that never win a cell, overlaps decided by
//! order, and cells that fall through to a catch-all rule or to `Other`.

use std::fmt::Write as _;

use datafusion::common::{Result, plan_datafusion_err};

/// The largest number of bins a score may have (codes stay one digit each).
pub const MAX_BINS: u32 = 9;

/// The name of cells that no rule matches.
pub const FALLBACK: &str = "Other";

/// The 11-segment R x F map with Lost split by M (the `default` map, 5 bins).
pub const DEFAULT_MAP: &str = "Lost: r1 f<=2 m<=2; Hibernating: r<=2 f<=2; \
    At Risk: r<=2 f<=4; Can't Lose Them: r<=2 f5; About To Sleep: r3 f<=2; \
    Need Attention: r3 f3; Loyal Customers: r<=4 f>=4; Promising: r4 f1; \
    New Customers: r5 f1; Potential Loyalists: r4-5 f2-3; Champions: r5 f>=4";

/// The widely copied 10-segment R x F map (the `rf10` map, 5 bins).
pub const RF10_MAP: &str = "Hibernating: r1-2 f1-2; At Risk: r1-2 f3-4; \
    Can't Lose: r1-2 f5; About To Sleep: r3 f1-2; Need Attention: r3 f3; \
    Loyal Customers: r3-4 f4-5; Promising: r4 f1; New Customers: r5 f1; \
    Potential Loyalists: r4-5 f2-3; Champions: r5 f4-5";

/// PyMC-Marketing's default `segment_config` of `rfm_segments` (the `pymc`
/// map, 4 bins): exact cells per segment, everything else `Other`.
pub const PYMC_MAP: &str = "Premium Customer: 334 443 444 344 434 433 343 333; \
    Repeat Customer: 244 234 232 332 143 233 243; \
    Top Spender: 424 414 144 314 324 124 224 423 413 133 323 313 134; \
    At Risk Customer: 422 223 212 122 222 132 322 312 412 123 214; \
    Inactive Customer: 411 111 113 114 112 211 311";

/// A built-in map: its name, its rules and the bins it is written for.
pub const BUILT_IN: [(&str, &str, u32); 3] = [
    ("default", DEFAULT_MAP, 5),
    ("pymc", PYMC_MAP, 4),
    ("rf10", RF10_MAP, 5),
];

/// A parsed segment map with a lookup table over every cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentMap {
    label: String,
    bins: u32,
    rules: Vec<Rule>,
    /// Winning rule per cell (`rules.len()` for the fallback), 9 x 9 x 9 cells.
    winner: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    name: String,
    matcher: Matcher,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    /// Inclusive score ranges for r, f and m.
    Ranges([(u32, u32); 3]),
    /// Exact cells.
    Cells(Vec<[u32; 3]>),
    /// Every cell: a catch-all rule.
    Any,
}

/// One finding of [`SegmentMap::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `unreachable`, `overlap` or `fallback`.
    pub kind: &'static str,
    /// The segment the finding is about.
    pub segment: String,
    /// How many cells it concerns.
    pub cells: usize,
    /// A sentence with the cells' codes.
    pub detail: String,
}

impl SegmentMap {
    /// Parses a built-in map name or a rule list. `bins` is the score range a
    /// rule list is written for (built-in maps carry their own).
    pub fn parse(text: &str, bins: u32) -> Result<Self> {
        let trimmed = text.trim();
        if let Some((name, rules, bins)) = BUILT_IN
            .iter()
            .find(|(n, _, _)| n.eq_ignore_ascii_case(trimmed))
        {
            return Self::from_rules(name, rules, *bins);
        }
        if !trimmed.contains(':') {
            return Err(plan_datafusion_err!(
                "rfm_segment: map '{trimmed}' is neither a built-in map nor a rule list. \
                 Use 'default', 'pymc', 'rf10' or rules such as \
                 'Champions: r4-5 f4-5; Others: *'."
            ));
        }
        Self::from_rules("custom", trimmed, bins)
    }

    fn from_rules(label: &str, text: &str, bins: u32) -> Result<Self> {
        if !(2..=MAX_BINS).contains(&bins) {
            return Err(plan_datafusion_err!(
                "rfm_segment: bins must be from 2 to {MAX_BINS}; got {bins}."
            ));
        }
        let rules = text
            .split([';', '\n'])
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(parse_rule)
            .collect::<Result<Vec<_>>>()?;
        if rules.is_empty() {
            return Err(plan_datafusion_err!(
                "rfm_segment: the map has no rules. Write rules such as \
                 'Champions: r4-5 f4-5; Others: *'."
            ));
        }
        let n = MAX_BINS as usize;
        let mut winner = vec![rules.len() as u16; n * n * n];
        for (i, cell) in winner.iter_mut().enumerate() {
            let code = [
                (i / (n * n)) as u32 + 1,
                (i / n % n) as u32 + 1,
                (i % n) as u32 + 1,
            ];
            if let Some(w) = rules.iter().position(|r| r.matches(code)) {
                *cell = w as u16;
            }
        }
        Ok(Self {
            label: label.to_string(),
            bins,
            rules,
            winner,
        })
    }

    /// The same map checked over another score range.
    pub fn with_bins(mut self, bins: u32) -> Result<Self> {
        if !(2..=MAX_BINS).contains(&bins) {
            return Err(plan_datafusion_err!(
                "rfm_segment: bins must be from 2 to {MAX_BINS}; got {bins}."
            ));
        }
        self.bins = bins;
        Ok(self)
    }

    /// The score range (1..=bins) this map is written for.
    pub fn bins(&self) -> u32 {
        self.bins
    }

    /// Whether this is a built-in map, whose scores must lie within its bins.
    pub fn is_built_in(&self) -> bool {
        self.label != "custom"
    }

    /// The map's label (`default`, `pymc`, `rf10` or `custom`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Every name the map can give, in rule order, then the fallback.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.name.as_str()).chain([FALLBACK])
    }

    /// The segment of one cell; scores must lie in `1..=MAX_BINS`.
    pub fn segment(&self, code: [u32; 3]) -> &str {
        let n = MAX_BINS as usize;
        let [r, f, m] = code.map(|s| s as usize - 1);
        let w = self.winner[(r * n + f) * n + m] as usize;
        self.rules.get(w).map_or(FALLBACK, |r| r.name.as_str())
    }

    /// Rules that never win, overlaps decided by order, and fall-through cells,
    /// over every cell with scores in `1..=bins`.
    pub fn check(&self) -> Vec<Finding> {
        let cells = self.cells();
        let winners: Vec<Option<usize>> = cells
            .iter()
            .map(|c| self.rules.iter().position(|r| r.matches(*c)))
            .collect();
        let mut findings = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let won = winners.iter().filter(|w| **w == Some(i)).count();
            if won == 0 {
                findings.push(Finding {
                    kind: "unreachable",
                    segment: rule.name.clone(),
                    cells: 0,
                    detail: format!(
                        "rule {} ('{}') never names a cell: earlier rules take all \
                         of its cells or it matches none within 1..{}",
                        i + 1,
                        rule.name,
                        self.bins
                    ),
                });
            }
            for (j, earlier) in self.rules[..i].iter().enumerate() {
                let lost: Vec<[u32; 3]> = cells
                    .iter()
                    .zip(&winners)
                    .filter(|(c, w)| **w == Some(j) && rule.matches(**c))
                    .map(|(c, _)| *c)
                    .collect();
                if !lost.is_empty() && !matches!(rule.matcher, Matcher::Any) {
                    findings.push(Finding {
                        kind: "overlap",
                        segment: rule.name.clone(),
                        cells: lost.len(),
                        detail: format!(
                            "{} go to '{}' (rule {}), which comes first",
                            codes(&lost),
                            earlier.name,
                            j + 1
                        ),
                    });
                }
            }
        }
        let mut fallen: Vec<(String, Vec<[u32; 3]>)> = Vec::new();
        for (c, w) in cells.iter().zip(&winners) {
            let name = match w {
                Some(i) if matches!(self.rules[*i].matcher, Matcher::Any) => {
                    &self.rules[*i].name
                }
                Some(_) => continue,
                None => FALLBACK,
            };
            match fallen.iter_mut().find(|(n, _)| n == name) {
                Some((_, list)) => list.push(*c),
                None => fallen.push((name.to_string(), vec![*c])),
            }
        }
        for (name, list) in fallen {
            findings.push(Finding {
                kind: "fallback",
                segment: name,
                cells: list.len(),
                detail: format!("{} match no specific rule", codes(&list)),
            });
        }
        findings
    }

    fn cells(&self) -> Vec<[u32; 3]> {
        let b = self.bins;
        (1..=b)
            .flat_map(|r| (1..=b).flat_map(move |f| (1..=b).map(move |m| [r, f, m])))
            .collect()
    }
}

impl Rule {
    fn matches(&self, code: [u32; 3]) -> bool {
        match &self.matcher {
            Matcher::Any => true,
            Matcher::Cells(cells) => cells.contains(&code),
            Matcher::Ranges(ranges) => ranges
                .iter()
                .zip(code)
                .all(|((lo, hi), s)| (*lo..=*hi).contains(&s)),
        }
    }
}

/// Cell codes as text, at most 12 listed.
fn codes(cells: &[[u32; 3]]) -> String {
    let mut out = format!(
        "{} cell{}",
        cells.len(),
        if cells.len() == 1 { "" } else { "s" }
    );
    out.push_str(" (");
    for (i, [r, f, m]) in cells.iter().take(12).enumerate() {
        let sep = if i == 0 { "" } else { " " };
        let _ = write!(out, "{sep}{r}{f}{m}");
    }
    if cells.len() > 12 {
        out.push_str(" ...");
    }
    out.push(')');
    out
}

fn parse_rule(text: &str) -> Result<Rule> {
    let Some((name, body)) = text.split_once(':') else {
        return Err(plan_datafusion_err!(
            "rfm_segment: rule '{text}' has no ':'. Write 'Name: r4-5 f>=3' or 'Name: *'."
        ));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(plan_datafusion_err!(
            "rfm_segment: rule '{text}' has an empty name."
        ));
    }
    let tokens: Vec<&str> = body
        .split([' ', ',', '\t'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    let matcher = if tokens.is_empty() || tokens == ["*"] {
        Matcher::Any
    } else if tokens
        .iter()
        .all(|t| t.len() == 3 && t.bytes().all(|b| b.is_ascii_digit()))
    {
        let cells = tokens
            .iter()
            .map(|t| parse_cell(t, text))
            .collect::<Result<Vec<_>>>()?;
        Matcher::Cells(cells)
    } else {
        let mut ranges = [(1, MAX_BINS); 3];
        for token in tokens {
            let (dim, lo, hi) = parse_condition(token, text)?;
            let (old_lo, old_hi) = ranges[dim];
            ranges[dim] = (old_lo.max(lo), old_hi.min(hi));
        }
        Matcher::Ranges(ranges)
    };
    Ok(Rule {
        name: name.to_string(),
        matcher,
    })
}

fn parse_cell(token: &str, rule: &str) -> Result<[u32; 3]> {
    let d: Vec<u32> = token.bytes().map(|b| u32::from(b - b'0')).collect();
    if d.contains(&0) {
        return Err(plan_datafusion_err!(
            "rfm_segment: cell '{token}' in rule '{rule}' has a score 0; scores start at 1."
        ));
    }
    Ok([d[0], d[1], d[2]])
}

/// Parses `r4-5`, `f>=3`, `m=2`, `r<3`: the dimension and an inclusive range.
fn parse_condition(token: &str, rule: &str) -> Result<(usize, u32, u32)> {
    let bad = || {
        plan_datafusion_err!(
            "rfm_segment: condition '{token}' in rule '{rule}' is not understood. \
             Use r, f or m with N, N-M, =N, <N, <=N, >N or >=N (scores 1 to {MAX_BINS}), \
             e.g. 'r4-5 f>=3', or three-digit cells such as '554 555'."
        )
    };
    let mut chars = token.chars();
    let dim = match chars.next().map(|c| c.to_ascii_lowercase()) {
        Some('r') => 0,
        Some('f') => 1,
        Some('m') => 2,
        _ => return Err(bad()),
    };
    let rest = chars.as_str();
    let num = |s: &str| {
        s.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_BINS).contains(n))
    };
    let (lo, hi) = if let Some(n) = rest.strip_prefix(">=") {
        (num(n).ok_or_else(bad)?, MAX_BINS)
    } else if let Some(n) = rest.strip_prefix("<=") {
        (1, num(n).ok_or_else(bad)?)
    } else if let Some(n) = rest.strip_prefix('>') {
        (num(n).ok_or_else(bad)? + 1, MAX_BINS)
    } else if let Some(n) = rest.strip_prefix('<') {
        (1, num(n).ok_or_else(bad)?.saturating_sub(1))
    } else if let Some((a, b)) = rest.split_once('-') {
        let (lo, hi) = (num(a).ok_or_else(bad)?, num(b).ok_or_else(bad)?);
        if lo > hi {
            return Err(plan_datafusion_err!(
                "rfm_segment: range '{token}' in rule '{rule}' runs backwards; write \
                 the low score first, e.g. '{}{hi}-{lo}'.",
                &token[..1]
            ));
        }
        (lo, hi)
    } else {
        let n = num(rest.strip_prefix('=').unwrap_or(rest)).ok_or_else(bad)?;
        (n, n)
    };
    Ok((dim, lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_map_names_every_cell_with_one_of_its_eleven_segments() {
        let map = SegmentMap::parse("default", 5).unwrap();
        assert_eq!(map.names().count(), 12);
        assert!(
            map.check()
                .iter()
                .all(|f| f.kind != "fallback" && f.kind != "unreachable")
        );
        assert_eq!(map.segment([1, 1, 1]), "Lost");
        assert_eq!(map.segment([1, 1, 3]), "Hibernating");
        assert_eq!(map.segment([2, 5, 1]), "Can't Lose Them");
        assert_eq!(map.segment([3, 4, 1]), "Loyal Customers");
        assert_eq!(map.segment([5, 5, 5]), "Champions");
        assert_eq!(map.segment([5, 1, 5]), "New Customers");
        assert_eq!(map.segment([4, 3, 2]), "Potential Loyalists");
    }

    #[test]
    fn first_match_wins_and_the_check_reports_the_shadowed_rule() {
        let ordered =
            SegmentMap::parse("Champions: r4-5 f4-5 m4-5; Loyal: r2-5 f3-5 m3-5", 5)
                .unwrap();
        assert_eq!(ordered.segment([5, 5, 5]), "Champions");
        assert_eq!(ordered.segment([1, 1, 1]), FALLBACK);

        let reversed =
            SegmentMap::parse("Loyal: r2-5 f3-5 m3-5; Champions: r4-5 f4-5 m4-5", 5)
                .unwrap();
        assert_eq!(reversed.segment([5, 5, 5]), "Loyal");
        let findings = reversed.check();
        assert!(
            findings
                .iter()
                .any(|f| f.kind == "unreachable" && f.segment == "Champions")
        );
        let fallback = findings.iter().find(|f| f.kind == "fallback").unwrap();
        assert_eq!(fallback.segment, FALLBACK);
        assert_eq!(fallback.cells, 125 - 4 * 3 * 3);
    }

    #[test]
    fn pymc_map_lists_cells_and_falls_back_to_other() {
        let map = SegmentMap::parse("PYMC", 5).unwrap();
        assert_eq!(map.bins(), 4);
        assert_eq!(map.segment([4, 4, 4]), "Premium Customer");
        assert_eq!(map.segment([1, 1, 1]), "Inactive Customer");
        assert_eq!(map.segment([4, 1, 2]), "At Risk Customer");
        assert_eq!(map.segment([1, 4, 1]), FALLBACK);
    }

    #[test]
    fn conditions_cover_every_operator() {
        let map = SegmentMap::parse("A: r>3 f<2; B: r=2 m>=4; C: r<=1 f<3; Rest: *", 5)
            .unwrap();
        assert_eq!(map.segment([4, 1, 1]), "A");
        assert_eq!(map.segment([2, 5, 4]), "B");
        assert_eq!(map.segment([1, 2, 1]), "C");
        assert_eq!(map.segment([3, 3, 3]), "Rest");
        let findings = map.check();
        assert!(
            findings
                .iter()
                .any(|f| f.kind == "fallback" && f.segment == "Rest")
        );
    }

    #[test]
    fn bad_rules_name_the_rule_and_say_what_to_write() {
        let err = |t: &str| SegmentMap::parse(t, 5).unwrap_err().to_string();
        assert!(err("gold").contains("neither a built-in map"));
        assert!(err("Gold: q5").contains("condition 'q5' in rule 'Gold: q5'"));
        assert!(err("Gold: r0-5").contains("'r0-5'"));
        assert!(err(": r5").contains("empty name"));
        assert!(err("Gold: 505").contains("score 0"));
    }
}
