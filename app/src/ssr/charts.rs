//! The Usage page's charts, drawn on the server as SVG with plotters: axes with units, time
//! ticks in UTC, readable values (12.3k), a legend per chart. Server-side so the browser gets
//! markup and the WASM bundle carries no charting code.
use crate::types::{compact_count, UsageChart, UsageFigures, UsageRange};
use plotters::prelude::*;

const WIDTH: u32 = 760;
const HEIGHT: u32 = 240;
// The console's palette (style/main.css), dark enough for text contrast on white.
const BLUE: RGBColor = RGBColor(37, 99, 235);
const ORANGE: RGBColor = RGBColor(194, 65, 12);
const RED: RGBColor = RGBColor(185, 28, 28);
const GREEN: RGBColor = RGBColor(21, 128, 61);
const GREY: RGBColor = RGBColor(75, 85, 99);

struct Line<'a> {
    label: &'a str,
    color: RGBColor,
    values: Vec<f64>,
}

/// The charts of a range: requests (with errors and 429s), tokens (input and output), spend
/// (in `currency`; drawn from the exact decimals, as floats only for the picture), latency and
/// time to first token (p50, p95).
pub fn usage_charts(points: &[(i64, UsageFigures)], range: UsageRange, currency: &str) -> Vec<UsageChart> {
    let xs: Vec<i64> = points.iter().map(|(m, _)| *m).collect();
    let col = |f: &dyn Fn(&UsageFigures) -> f64| points.iter().map(|(_, u)| f(u)).collect::<Vec<f64>>();
    let per = range.bucket_label();
    let ms = |v: Option<f64>| v.unwrap_or(f64::NAN);
    vec![
        chart(
            "Requests",
            &format!("calls / {per}"),
            &xs,
            range,
            false,
            &[
                Line { label: "requests", color: BLUE, values: col(&|u| u.requests as f64) },
                Line { label: "errors", color: RED, values: col(&|u| u.errors as f64) },
                Line { label: "429 rate limited", color: ORANGE, values: col(&|u| u.rate_limited as f64) },
            ],
        ),
        chart(
            "Tokens",
            &format!("tokens / {per}"),
            &xs,
            range,
            false,
            &[
                Line { label: "input", color: BLUE, values: col(&|u| u.input_tokens as f64) },
                Line { label: "output", color: GREEN, values: col(&|u| u.output_tokens as f64) },
            ],
        ),
        chart(
            "Spend",
            &format!("{currency} / {per}"),
            &xs,
            range,
            false,
            &[Line { label: "spend", color: GREEN, values: col(&|u| u.cost.parse::<f64>().unwrap_or(0.0)) }],
        ),
        chart(
            "Latency",
            "milliseconds",
            &xs,
            range,
            true,
            &[
                Line { label: "p50 total", color: BLUE, values: col(&|u| ms(u.p50_ms)) },
                Line { label: "p95 total", color: RED, values: col(&|u| ms(u.p95_ms)) },
                Line { label: "p50 first token", color: GREEN, values: col(&|u| ms(u.ttft_p50_ms)) },
                Line { label: "p95 first token", color: GREY, values: col(&|u| ms(u.ttft_p95_ms)) },
            ],
        ),
    ]
}

/// `HH:MM` (UTC) for ranges of a day or less, `Mon DD` beyond.
fn tick(minute: i64, range: UsageRange) -> String {
    let days = minute.div_euclid(1440);
    if matches!(range, UsageRange::Hour | UsageRange::Day) {
        let m = minute.rem_euclid(1440);
        format!("{:02}:{:02}", m / 60, m % 60)
    } else {
        let (_, month, day) = crate::ssr::services::usage::civil_from_days(days);
        const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        format!("{} {day}", MONTHS[(month - 1) as usize])
    }
}

/// One line chart; `gaps`: a NaN value (no calls in that bucket) breaks the line instead of
/// drawing a zero latency.
fn chart(title: &str, unit: &str, xs: &[i64], range: UsageRange, gaps: bool, lines: &[Line]) -> UsageChart {
    let mut svg = String::new();
    let drawn = draw(&mut svg, title, unit, xs, range, gaps, lines);
    if let Err(e) = drawn {
        tracing::error!(error = %e, chart = title, "could not draw chart");
        svg.clear();
    }
    // Scales with its box (CSS sets the width), and says what it is to a screen reader.
    let described = lines.iter().map(|l| l.label).collect::<Vec<_>>().join(", ");
    let svg = svg.replacen("<svg ", &format!("<svg role=\"img\" aria-label=\"{title} ({unit}): {described}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" preserveAspectRatio=\"xMidYMid meet\" "), 1);
    UsageChart { title: title.to_owned(), svg }
}

fn draw(
    svg: &mut String,
    title: &str,
    unit: &str,
    xs: &[i64],
    range: UsageRange,
    gaps: bool,
    lines: &[Line],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (x0, x1) = match (xs.first(), xs.last()) {
        (Some(a), Some(b)) if b > a => (*a, *b),
        (Some(a), _) => (*a, *a + 1),
        _ => (0, 1),
    };
    let top = lines.iter().flat_map(|l| l.values.iter().copied()).filter(|v| v.is_finite()).fold(0.0f64, f64::max);
    let y1 = if top <= 0.0 { 1.0 } else { top * 1.1 };
    let mut chart = ChartBuilder::on(&root)
        .margin(8)
        .caption(title, ("sans-serif", 18))
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, 0f64..y1)?;
    chart
        .configure_mesh()
        .x_labels(7)
        .y_labels(5)
        .x_label_formatter(&|m| tick(*m, range))
        .y_label_formatter(&|v| {
            if *v >= 10_000.0 {
                compact_count(*v as i64)
            } else if *v >= 10.0 || *v == 0.0 {
                format!("{v:.0}")
            } else {
                // Small amounts (money) keep two significant digits.
                let decimals = ((-v.log10()).floor() as i32 + 2).clamp(1, 9) as usize;
                format!("{v:.decimals$}")
            }
        })
        .y_desc(unit)
        // Only the labelled grid lines: the fine ones made the chart hard to read.
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(225, 228, 232))
        .label_style(("sans-serif", 14))
        .draw()?;
    for l in lines {
        let color = l.color;
        let points: Vec<(i64, f64)> = xs.iter().copied().zip(l.values.iter().copied()).collect();
        // A line broken at the gaps: one series per run of values.
        let runs: Vec<Vec<(i64, f64)>> =
            if gaps { points.split(|(_, v)| !v.is_finite()).filter(|r| !r.is_empty()).map(<[_]>::to_vec).collect() } else { vec![points] };
        let mut first = true;
        for run in runs {
            let single = run.len() == 1;
            let series = chart.draw_series(LineSeries::new(run.clone(), color.stroke_width(2)))?;
            if first {
                series.label(l.label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
                first = false;
            }
            // A lone point of a gapped line would not show as a line: a dot.
            if single {
                chart.draw_series(run.into_iter().map(|p| Circle::new(p, 2, color.filled())))?;
            }
        }
        if first {
            // No value at all: still in the legend, so the reader knows what is absent.
            chart
                .draw_series(std::iter::empty::<PathElement<(i64, f64)>>())?
                .label(l.label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font(("sans-serif", 13))
        .draw()?;
    root.present()?;
    Ok(())
}
