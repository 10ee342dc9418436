//! Exact money: what a call costs at a model's prices, in integers end to end.
//!
//! Prices are kept in **pico-units** of the platform's currency (10⁻¹² of a unit) per token,
//! per unit (document, character, image, second) and per call: a price per million tokens with
//! up to six decimals ("0.075" → 75,000 pico per token) is an exact integer, and so is a price
//! per image or per second with up to twelve. A call's cost is summed in pico (in `i128`: no
//! overflow for any bounded price and count) and **rounded once per call, half to even, to a
//! nano-unit** (10⁻⁹), the unit the usage rows add up: sums of rounded calls are exact, so the
//! CSV's lines add up to the totals exactly, and no float is ever involved.
//!
//! Cached input tokens are part of the input the gateway records (OpenAI counts them inside
//! `prompt_tokens`; the Anthropic readers add `cache_read_input_tokens` in): they are priced at
//! the cached rate and the rest of the input at the input rate.

/// Pico-units (10⁻¹²) per nano-unit (10⁻⁹).
const PICO_PER_NANO: i128 = 1_000;
/// Nano-units per unit of the currency.
pub const NANO_PER_UNIT: i64 = 1_000_000_000;
/// The most a price may be, per token, unit or call, in pico: 1,000,000 currency units (a
/// bound that keeps every product far from overflow and refuses typos of many zeros).
pub const MAX_PRICE_PICO: i64 = 1_000_000 * 1_000_000_000_000;

/// One version of a model's prices, in pico-units of the platform currency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rates {
    pub input: i64,
    pub cached_input: i64,
    /// Input written to the prompt cache (Anthropic's cache writes); `None`: priced as input.
    pub cache_write: Option<i64>,
    pub output: i64,
    /// Per unit of the model's kind besides tokens (documents, characters, images, seconds).
    pub unit: i64,
    pub call: i64,
}

/// What a call used, as its record says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Used {
    /// Input tokens, cached reads and cache writes included.
    pub input: u64,
    pub cached: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write: u64,
    pub output: u64,
    pub units: u64,
}

/// `n / d` rounded half to even (`d > 0`).
fn div_half_even(n: i128, d: i128) -> i128 {
    let (q, r) = (n.div_euclid(d), n.rem_euclid(d));
    match (2 * r).cmp(&d) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q & 1),
    }
}

impl Rates {
    /// What `used` costs, in nano-units, rounded half to even (see the module's note).
    pub fn cost_nanos(&self, used: Used) -> i64 {
        let cached = used.cached.min(used.input);
        let written = used.cache_write.min(used.input - cached);
        let pico = i128::from(used.input - cached - written) * i128::from(self.input)
            + i128::from(cached) * i128::from(self.cached_input)
            + i128::from(written) * i128::from(self.cache_write.unwrap_or(self.input))
            + i128::from(used.output) * i128::from(self.output)
            + i128::from(used.units) * i128::from(self.unit)
            + i128::from(self.call);
        i64::try_from(div_half_even(pico, PICO_PER_NANO)).unwrap_or(i64::MAX)
    }
}

/// A model's price versions by the Unix second each takes effect from, ascending: a call is
/// priced at the version in force when it ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule(Vec<(i64, Rates)>);

impl Schedule {
    pub fn new(mut versions: Vec<(i64, Rates)>) -> Self {
        versions.sort_by_key(|(from, _)| *from);
        Schedule(versions)
    }

    /// The version in force at Unix second `at`; `None` before the first.
    pub fn at(&self, at: i64) -> Option<&Rates> {
        let later = self.0.partition_point(|(from, _)| *from <= at);
        later.checked_sub(1).map(|i| &self.0[i].1)
    }
}

/// Why a price could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadPrice(pub String);

/// Reads a decimal price (`"0.075"`, `"15"`, `"2.5e-3"` is refused) per `per` items into pico
/// per item: `per` is 1,000,000 for a price per million tokens, 1 for a price per unit or call.
/// At most as many decimals as the pico scale keeps exactly; never negative; bounded.
pub fn parse_price(s: &str, per: u64) -> Result<i64, BadPrice> {
    // pico per item = price × 10¹² / per; `per` is a power of ten.
    let scale = 12 - per.checked_ilog10().unwrap_or(0);
    match parse_decimal(s, scale)? {
        Some(v) if v <= MAX_PRICE_PICO => Ok(v),
        _ => Err(BadPrice("at most 1,000,000 per token, unit or call".into())),
    }
}

/// The most a budget in money may be: a billion units of the currency.
pub const MAX_BUDGET_NANOS: i64 = 1_000_000_000 * NANO_PER_UNIT;

/// Reads an amount of money (`"25.50"`) into nano-units: at most nine decimals, more than
/// nothing, at most [`MAX_BUDGET_NANOS`].
pub fn parse_money(s: &str) -> Result<i64, BadPrice> {
    match parse_decimal(s, 9)? {
        Some(0) => Err(BadPrice("more than 0 (leave it empty for no budget)".into())),
        Some(v) if v <= MAX_BUDGET_NANOS => Ok(v),
        _ => Err(BadPrice("at most 1,000,000,000".into())),
    }
}

/// A non-negative decimal as an integer of 10^-`scale` units; `None` when it does not fit.
fn parse_decimal(s: &str, scale: u32) -> Result<Option<i64>, BadPrice> {
    let s = s.trim();
    let bad = |why: &str| Err(BadPrice(why.to_owned()));
    if s.is_empty() {
        return bad("a number, e.g. 0.15");
    }
    if s.starts_with('-') {
        return bad("never negative");
    }
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return bad("a decimal number, e.g. 0.15");
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > scale as usize {
        return Err(BadPrice(format!("at most {scale} decimals")));
    }
    let digits = format!("{whole}{frac}{}", "0".repeat(scale as usize - frac.len()));
    Ok(match digits.trim_start_matches('0') {
        "" => Some(0),
        d => d.parse::<i64>().ok(),
    })
}

/// A pico price per `per` items as the decimal an operator typed (`75_000`, 1,000,000 →
/// `"0.075"`).
pub fn format_price(pico: i64, per: u64) -> String {
    let scale = 12 - per.checked_ilog10().unwrap_or(0);
    decimal(i128::from(pico), scale)
}

/// Nano-units as a decimal of the currency (`7_500` → `"0.0000075"`): exact, trailing zeros
/// dropped (at least two decimals kept, as money is read).
pub fn format_nanos(nanos: i64) -> String {
    decimal(i128::from(nanos), 9)
}

fn decimal(v: i128, scale: u32) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let v = v.unsigned_abs();
    let unit = 10u128.pow(scale);
    let frac = format!("{:0width$}", v % unit, width = scale as usize);
    let mut frac = frac.trim_end_matches('0').to_owned();
    while frac.len() < 2.min(scale as usize) {
        frac.push('0');
    }
    if frac.is_empty() {
        format!("{sign}{}", v / unit)
    } else {
        format!("{sign}{}.{frac}", v / unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_read_exactly_and_refused_clearly() {
        assert_eq!(parse_price("0.075", 1_000_000), Ok(75_000));
        assert_eq!(parse_price("15", 1_000_000), Ok(15_000_000));
        assert_eq!(parse_price("0.000001", 1_000_000), Ok(1));
        assert_eq!(parse_price("0.04", 1), Ok(40_000_000_000));
        assert_eq!(parse_price("0", 1), Ok(0));
        assert_eq!(parse_price(" 2.50 ", 1_000_000), Ok(2_500_000));
        assert_eq!(parse_price(".5", 1_000_000), Ok(500_000));
        assert_eq!(parse_price("0.0000001", 1_000_000), Err(BadPrice("at most 6 decimals".into())));
        assert_eq!(parse_price("-1", 1).unwrap_err().0, "never negative");
        assert_eq!(parse_money("25.5"), Ok(25_500_000_000));
        assert_eq!(parse_money("0.000000001"), Ok(1));
        assert!(parse_money("0").is_err() && parse_money("0.0000000001").is_err() && parse_money("1000000000.1").is_err());
        for s in ["", "abc", "1e3", "1.2.3", "."] {
            assert!(parse_price(s, 1).is_err(), "{s}");
        }
        assert!(parse_price("1000001", 1).is_err());
        assert!(parse_price("99999999999999999999999", 1).is_err());
        for (pico, per) in [(75_000, 1_000_000), (15_000_000, 1_000_000), (40_000_000_000, 1), (1, 1)] {
            assert_eq!(parse_price(&format_price(pico, per), per), Ok(pico));
        }
        assert_eq!(format_price(75_000, 1_000_000), "0.075");
        assert_eq!(format_price(15_000_000, 1_000_000), "15.00");
    }

    #[test]
    fn a_call_costs_its_parts_at_their_rates_rounded_once_half_to_even() {
        // $3 / M input, $0.30 / M cached, $15 / M output.
        let r = Rates { input: 3_000_000, cached_input: 300_000, cache_write: None, output: 15_000_000, unit: 0, call: 0 };
        // 1,000 input of which 400 cached, 200 output: 600×3e6 + 400×3e5 + 200×1.5e7 pico.
        let c = r.cost_nanos(Used { input: 1_000, cached: 400, output: 200, ..Default::default() });
        assert_eq!(c, (600 * 3_000_000 + 400 * 300_000 + 200 * 15_000_000) / 1_000);
        assert_eq!(format_nanos(c), "0.00492");
        // Half to even at the nano: 0.5 nano → 0, 1.5 → 2, 2.5 → 2; 0.5001 → 1.
        let per_token = |p: i64| Rates { input: p, ..Default::default() };
        let one = Used { input: 1, ..Default::default() };
        assert_eq!(per_token(500).cost_nanos(one), 0);
        assert_eq!(per_token(1_500).cost_nanos(one), 2);
        assert_eq!(per_token(2_500).cost_nanos(one), 2);
        assert_eq!(per_token(501).cost_nanos(one), 1);
        // Units and the per-call price; cached beyond the input is capped at it.
        let images = Rates { unit: 40_000_000_000, call: 1_000, ..Default::default() };
        assert_eq!(images.cost_nanos(Used { units: 3, ..Default::default() }), 120_000_001);
        assert_eq!(r.cost_nanos(Used { input: 10, cached: 50, ..Default::default() }), 10 * 300);
        // Cache writes: at their own rate, else as input; never counted twice with reads.
        let used = Used { input: 1_000, cached: 400, cache_write: 100, output: 0, units: 0 };
        assert_eq!(r.cost_nanos(used), (500 * 3_000_000 + 400 * 300_000 + 100 * 3_000_000) / 1_000, "as input without a rate");
        let writes = Rates { cache_write: Some(3_750_000), ..r };
        assert_eq!(writes.cost_nanos(used), (500 * 3_000_000 + 400 * 300_000 + 100 * 3_750_000) / 1_000);
        assert_eq!(
            writes.cost_nanos(Used { input: 10, cached: 4, cache_write: 50, ..Default::default() }),
            (4 * 300_000 + 6 * 3_750_000) / 1_000
        );
        // The largest prices and counts do not overflow.
        let max = Rates {
            input: MAX_PRICE_PICO,
            cached_input: MAX_PRICE_PICO,
            cache_write: Some(MAX_PRICE_PICO),
            output: MAX_PRICE_PICO,
            unit: MAX_PRICE_PICO,
            call: MAX_PRICE_PICO,
        };
        assert_eq!(max.cost_nanos(Used { input: u64::MAX, cached: 0, cache_write: 0, output: u64::MAX, units: u64::MAX }), i64::MAX);
    }

    #[test]
    fn a_call_is_priced_at_the_version_in_force_when_it_ended() {
        let v = |input| Rates { input, ..Default::default() };
        let s = Schedule::new(vec![(200, v(2)), (100, v(1)), (300, v(3))]);
        assert_eq!(s.at(99), None);
        assert_eq!(s.at(100), Some(&v(1)));
        assert_eq!(s.at(250), Some(&v(2)));
        assert_eq!(s.at(300), Some(&v(3)));
        assert_eq!(s.at(i64::MAX), Some(&v(3)));
        assert_eq!(Schedule::default().at(0), None);
    }

    #[test]
    fn nanos_print_as_exact_decimals() {
        assert_eq!(format_nanos(7_500), "0.0000075");
        assert_eq!(format_nanos(1_000_000_000), "1.00");
        assert_eq!(format_nanos(1_230_000_000), "1.23");
        assert_eq!(format_nanos(0), "0.00");
        assert_eq!(format_nanos(-5), "-0.000000005");
    }
}
