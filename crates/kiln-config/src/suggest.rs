//! "did you mean" hints: the closest candidate by edit distance, if it is close enough.

/// Returns the candidate closest to `word` when the edit distance is small relative to its
/// length (at most a third of the longer word, and at least 1 allowed).
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word: Vec<char> = word.chars().collect();
    let mut other = Vec::new();
    let mut rows = Rows::default();
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        other.clear();
        other.extend(c.chars());
        let allowed = (word.len().max(other.len()) / 3).max(1);
        // Only a closer candidate than the best so far can win: bound the search by that.
        let limit = best.map_or(allowed, |(d, _)| allowed.min(d.saturating_sub(1)));
        if let Some(d) = rows.distance_within(&word, &other, limit)
            && best.is_none_or(|(b, _)| d < b)
        {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Edit distance where swapping two adjacent characters counts as one edit, as typos do.
#[cfg(test)]
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    Rows::default().distance_within(&a, &b, usize::MAX).expect("no limit")
}

/// The three rows of the distance table that are needed at a time, kept between
/// candidates so that a search over thousands of names allocates once.
#[derive(Default)]
struct Rows {
    before: Vec<usize>,
    prev: Vec<usize>,
    row: Vec<usize>,
}

impl Rows {
    /// The edit distance of `a` and `b` if it is at most `limit`. No work once every cell
    /// of a row is past the limit (a row's minimum never decreases further down), so most
    /// candidates cost a few cells.
    fn distance_within(&mut self, a: &[char], b: &[char], limit: usize) -> Option<usize> {
        if a.len().abs_diff(b.len()) > limit {
            return None;
        }
        let width = b.len() + 1;
        let Rows { before, prev, row } = self;
        before.clear();
        before.resize(width, 0);
        prev.clear();
        prev.extend(0..width);
        row.clear();
        row.resize(width, 0);
        for i in 1..=a.len() {
            row[0] = i;
            let mut row_min = row[0];
            for j in 1..width {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut best = (prev[j] + 1).min(row[j - 1] + 1).min(prev[j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(before[j - 2] + 1);
                }
                row[j] = best;
                row_min = row_min.min(best);
            }
            if row_min > limit {
                return None;
            }
            std::mem::swap(before, prev);
            std::mem::swap(prev, row);
        }
        Some(prev[width - 1]).filter(|&d| d <= limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        let keys = ["cmd", "inputs", "outputs", "deps", "env"];
        assert_eq!(did_you_mean("dpes", keys), Some("deps"));
        assert_eq!(did_you_mean("input", keys), Some("inputs"));
        assert_eq!(did_you_mean("zzzzzz", keys), None);
        assert_eq!(did_you_mean("outptus", keys), Some("outputs"), "a swap is one edit");
        assert_eq!(did_you_mean("dep", ["dept", "deps", "de"]), Some("dept"), "the first of equally close ones");
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("dpes", "deps"), 1);
        assert_eq!(edit_distance("same", "same"), 0);
        assert_eq!(edit_distance("ca", "abc"), 3);
        let (a, b): (Vec<char>, Vec<char>) = ("kitten".chars().collect(), "sitting".chars().collect());
        assert_eq!(Rows::default().distance_within(&a, &b, 2), None, "past the limit");
        assert_eq!(Rows::default().distance_within(&a, &b, 3), Some(3));
    }
}
