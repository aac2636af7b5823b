//! The benchmark report: markdown tables and a latency-by-percentile plot.

use std::fmt::Write;
use std::path::Path;

use plotters::prelude::*;

use crate::load::RunResult;

/// The columns every latency table has.
pub const HEADER: &str = "| run | requests | p50 ms | p75 ms | p95 ms | p99 ms | max ms | req/s | errors | warm |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";

/// How a target table shows whether a target was met.
pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

pub fn row(label: &str, r: &RunResult) -> String {
    format!(
        "| {label} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {} | {:.1}% |\n",
        r.count(),
        r.ms(0.50),
        r.ms(0.75),
        r.ms(0.95),
        r.ms(0.99),
        r.hist.max() as f64 / 1000.0,
        r.throughput(),
        r.errors,
        r.warm_share() * 100.0
    )
}

pub fn table(rows: &[(&str, &RunResult)]) -> String {
    let mut out = String::from(HEADER);
    for (label, r) in rows {
        out.push_str(&row(label, r));
    }
    out
}

/// A small markdown table from string cells.
pub fn simple_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}|",
        header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out
}

const QUANTILES: [f64; 12] = [
    0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9995, 0.9999,
];

/// Latency (log scale) against percentile, one line per run.
pub fn plot(path: &Path, title: &str, series: &[(&str, &RunResult)]) -> anyhow::Result<()> {
    let font = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"]
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no DejaVuSans.ttf for the plot's text (apt-get install fonts-dejavu-core)"
            )
        })?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow::anyhow!("invalid font"))?;

    let max = series
        .iter()
        .map(|(_, r)| r.hist.max() as f64 / 1000.0)
        .fold(1.0, f64::max)
        * 1.5;
    let min = series
        .iter()
        .map(|(_, r)| (r.hist.min().max(1)) as f64 / 1000.0)
        .fold(f64::MAX, f64::min)
        .max(0.01);
    let root = BitMapBackend::new(path, (1100, 650)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..(QUANTILES.len() - 1) as f64, (min..max).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(QUANTILES.len())
        .x_label_formatter(&|x| {
            let i = x.round() as usize;
            QUANTILES
                .get(i)
                .map(|q| format!("p{}", q * 100.0))
                .unwrap_or_default()
        })
        .y_desc("latency (ms, log scale)")
        .x_desc("percentile")
        .draw()?;
    let colors = [&BLUE, &RED, &GREEN, &MAGENTA, &CYAN, &BLACK];
    for (i, (label, r)) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        let points: Vec<(f64, f64)> = QUANTILES
            .iter()
            .enumerate()
            .map(|(x, q)| {
                (
                    x as f64,
                    (r.hist.value_at_quantile(*q).max(1) as f64 / 1000.0).max(min),
                )
            })
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(*label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
