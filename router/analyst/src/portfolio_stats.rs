//! The optimiser's inputs: expected returns and the covariance matrix, estimated from prices
//! (sample covariance of period returns, annualised) or given, and checked.

use super::*;

/// Annual expected returns and covariance, validated (Σ symmetric positive definite).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Stats {
    pub(super) mu: Vec<f64>,
    pub(super) cov: Vec<Vec<f64>>,
}

pub(super) fn statistics(req: &PortfolioRequest) -> Result<Stats, InputError> {
    let n = req.assets.len();
    if n == 0 || n > MAX_ASSETS {
        return fail(
            "assets",
            format!("1 to {MAX_ASSETS} assets are required, got {n}"),
        );
    }
    let periods = req.periods_per_year.unwrap_or(DEFAULT_PERIODS_PER_YEAR);
    if !(periods.is_finite() && periods > 0.0) {
        return fail(
            "periods_per_year",
            format!("must be a positive number, got {periods}"),
        );
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut first: Option<(usize, usize)> = None;
    let (mut mu, mut returns) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (i, asset) in req.assets.iter().enumerate() {
        if asset.symbol.trim().is_empty() {
            return fail(format!("assets[{i}].symbol"), "must not be empty");
        }
        if let Some(j) = seen.insert(&asset.symbol, i) {
            let message = format!("duplicate symbol {:?} (also assets[{j}])", asset.symbol);
            return fail(format!("assets[{i}].symbol"), message);
        }
        let series = match &asset.prices {
            Some(prices) => Some(period_returns(prices, i, &mut first)?),
            None => None,
        };
        let path = || format!("assets[{i}].expected_return");
        mu.push(match (asset.expected_return, &series) {
            (Some(m), _) if !m.is_finite() => return fail(path(), "must be a finite number"),
            (Some(m), _) => m,
            (None, Some(r)) => mean(r) * periods,
            (None, None) => return fail(path(), "missing: give it, or prices to estimate it from"),
        });
        returns.push(series);
    }
    let cov = match (&req.covariance, returns.iter().position(Option::is_none)) {
        (Some(rows), _) => given_covariance(rows, n)?,
        (None, None) => sample_covariance(&returns.iter().flatten().collect::<Vec<_>>(), periods),
        (None, Some(i)) => {
            let message = format!("required unless every asset has prices (assets[{i}] has none)");
            return fail("covariance", message);
        }
    };
    if !is_positive_definite(&cov) {
        let hint = match req.covariance {
            Some(_) => "",
            None => {
                " (estimated from prices: needs more periods than assets and no perfectly \
                      correlated series)"
            }
        };
        return fail("covariance", format!("{SINGULAR}{hint}"));
    }
    Ok(Stats { mu, cov })
}

/// Simple period returns pₜ/pₜ₋₁ − 1; `first` remembers the first priced asset and its length.
pub(super) fn period_returns(
    prices: &[f64],
    asset: usize,
    first: &mut Option<(usize, usize)>,
) -> Result<Vec<f64>, InputError> {
    let (path, len) = (format!("assets[{asset}].prices"), prices.len());
    if len < MIN_PRICES {
        return fail(
            path,
            format!("at least {MIN_PRICES} prices are required, got {len}"),
        );
    }
    if let Some(k) = prices.iter().position(|p| !(p.is_finite() && *p > 0.0)) {
        let message = format!("must be a finite positive price, got {}", prices[k]);
        return fail(format!("{path}[{k}]"), message);
    }
    match *first {
        Some((other, expected)) if expected != len => {
            let message = format!("has {len} prices but assets[{other}].prices has {expected}");
            return fail(
                path,
                format!("{message}; price series must have equal length"),
            );
        }
        Some(_) => {}
        None => *first = Some((asset, len)),
    }
    Ok(prices.windows(2).map(|w| w[1] / w[0] - 1.0).collect())
}

/// Sample covariance (divisor T − 1) of period returns, annualised by `periods`.
pub(super) fn sample_covariance(series: &[&Vec<f64>], periods: f64) -> Vec<Vec<f64>> {
    let deviations: Vec<Vec<f64>> = series
        .iter()
        .map(|s| {
            let m = mean(s);
            s.iter().map(|r| r - m).collect()
        })
        .collect();
    let row = |a: &Vec<f64>| -> Vec<f64> {
        let divisor = a.len() as f64 - 1.0;
        deviations
            .iter()
            .map(|b| dot(a, b) / divisor * periods)
            .collect()
    };
    deviations.iter().map(row).collect()
}

/// Checks shape, finiteness and symmetry; returns the exactly symmetric average of Σ and Σᵀ.
pub(super) fn given_covariance(rows: &[Vec<f64>], n: usize) -> Result<Vec<Vec<f64>>, InputError> {
    if rows.len() != n {
        return fail(
            "covariance",
            format!("must be {n}×{n}, got {} rows", rows.len()),
        );
    }
    for (i, row) in rows.iter().enumerate() {
        if row.len() != n {
            return fail(format!("covariance[{i}]"), format!("must have {n} entries"));
        }
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return fail(format!("covariance[{i}][{j}]"), "must be a finite number");
        }
    }
    let mut out = rows.to_vec();
    for (i, row) in rows.iter().enumerate() {
        for (j, &a) in row.iter().enumerate().skip(i + 1) {
            let b = rows[j][i];
            // Relative to the variances too, so rounding noise on a near-zero covariance passes.
            let scale = a
                .abs()
                .max(b.abs())
                .max((rows[i][i] * rows[j][j]).abs().sqrt());
            if (a - b).abs() > SYMMETRY_RELATIVE * scale {
                let message = format!("not symmetric: {a} here but {b} at covariance[{j}][{i}]");
                return fail(format!("covariance[{i}][{j}]"), message);
            }
            (out[i][j], out[j][i]) = ((a + b) / 2.0, (a + b) / 2.0);
        }
    }
    Ok(out)
}
