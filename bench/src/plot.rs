//! The benchmark plot: throughput, PUBACK p99 and the server's resident
//! memory against the number of connected devices, Wenu beside Mosquitto.

use std::path::Path;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;

use crate::connections::{Point, Sweep};

const WENU: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const MOSQUITTO: RGBColor = RGBColor(0xd6, 0x27, 0x28);

/// Three panels side by side, devices on a log axis, as SVG.
pub fn connections(sweep: &Sweep, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1500, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let root =
        root.titled("Wenu (durable) and Mosquitto (in memory) by connected devices", ("sans-serif", 22))?;
    let panels = root.split_evenly((1, 3));
    panel(&panels[0], sweep, "acknowledged msgs/s (QoS 1)", false, |p| p.acked_per_sec)?;
    panel(&panels[1], sweep, "PUBACK p99 (ms, log)", true, |p| p.puback_p99_ms)?;
    panel(&panels[2], sweep, "server resident memory (MiB)", false, |p| p.server_memory.rss_mib)?;
    root.present()?;
    Ok(())
}

fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    sweep: &Sweep,
    caption: &str,
    log_y: bool,
    value: impl Fn(&Point) -> f64,
) -> anyhow::Result<()> {
    let all = sweep.wenu.iter().chain(&sweep.mosquitto);
    let (x_min, x_max) = all
        .clone()
        .fold((f64::MAX, 1.0f64), |(lo, hi), p| (lo.min(p.devices as f64), hi.max(p.devices as f64)));
    let (x_min, x_max) = (x_min.min(x_max) * 0.8, x_max * 1.25);
    // Headroom above the highest point for the legend.
    let headroom = if log_y { 3.0 } else { 1.4 };
    let y_max = all.clone().map(&value).fold(0.0f64, f64::max).max(1e-3) * headroom;
    let y_min = all.map(&value).fold(f64::MAX, f64::min).max(1e-3) * 0.8;

    let mut builder = ChartBuilder::on(area);
    builder.caption(caption, ("sans-serif", 17)).margin(12).x_label_area_size(40).y_label_area_size(70);
    let series = |points: &[Point]| points.iter().map(|p| (p.devices as f64, value(p))).collect::<Vec<_>>();
    if log_y {
        let mut chart = builder.build_cartesian_2d((x_min..x_max).log_scale(), (y_min..y_max).log_scale())?;
        mesh(&mut chart)?;
        draw(&mut chart, series(&sweep.wenu), series(&sweep.mosquitto))?;
    } else {
        let mut chart = builder.build_cartesian_2d((x_min..x_max).log_scale(), 0.0..y_max)?;
        mesh(&mut chart)?;
        draw(&mut chart, series(&sweep.wenu), series(&sweep.mosquitto))?;
    }
    Ok(())
}

fn mesh<'a, X, Y>(chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("connected devices")
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| short(*v))
        .draw()?;
    Ok(())
}

/// 12000 → "12k", 250 → "250", 2.5 → "2.5".
fn short(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{}k", (v / 100.0).round() / 10.0)
    } else if v.abs() >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn draw<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    wenu: Vec<(f64, f64)>,
    mosquitto: Vec<(f64, f64)>,
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (name, color, points) in [("Wenu", WENU, wenu), ("Mosquitto", MOSQUITTO, mosquitto)] {
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
