//! The report's plots: SVG files drawn with plotters from the runs combined over rounds
//! ([`crate::report::combine`]). SVG leaves text to the viewer's fonts, so drawing needs no font
//! files; plotters only estimates text widths to lay out the axes.

use std::ops::Range;
use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::model::{Mode, Report, System, Workload};
use crate::report::{self, Combined};

/// Which plots were written, by file name within the plots directory (`None`: nothing to plot).
#[derive(Clone, Debug, Default)]
pub(crate) struct Plots {
    pub(crate) throughput: Option<&'static str>,
    pub(crate) latency: Option<&'static str>,
    pub(crate) scaling: Option<&'static str>,
    pub(crate) open_loop: Option<&'static str>,
}

const SIZE: (u32, u32) = (1100, 620);
const FONT: &str = "sans-serif";
const CAPTION_PT: u32 = 26;
const DESC_PT: u32 = 20;
const LABEL_PT: u32 = 17;
const VALUE_PT: u32 = 15;
/// Tableau's first two colours: distinct, and still distinct to the colour-blind.
const CAIRN: RGBColor = RGBColor(31, 119, 180);
const ETCD: RGBColor = RGBColor(255, 127, 14);
const SYSTEMS: [System; 2] = [System::Cairn, System::Etcd];

fn color(system: System) -> RGBColor {
    match system {
        System::Cairn => CAIRN,
        System::Etcd => ETCD,
    }
}

/// Draws every plot there is data for into `dir`.
pub(crate) fn write_all(
    report: &Report,
    combined: &[Combined],
    dir: &Path,
) -> anyhow::Result<Plots> {
    let clients = report.settings.clients;
    let plots = Plots {
        throughput: draw(dir, "throughput.svg", |path| {
            throughput(path, combined, clients)
        })?,
        latency: draw(dir, "latency.svg", |path| latency(path, combined, clients))?,
        scaling: draw(dir, "scaling.svg", |path| scaling(path, report, combined))?,
        open_loop: draw(dir, "open_loop.svg", |path| open_loop(path, combined))?,
    };
    Ok(plots)
}

/// Draws `file` in `dir` with `plot`, which says whether it had anything to draw. Without data,
/// a plot left by an earlier rendering into the same directory is removed, so that no stale
/// plot outlives its report.
fn draw(
    dir: &Path,
    file: &'static str,
    plot: impl FnOnce(&Path) -> anyhow::Result<bool>,
) -> anyhow::Result<Option<&'static str>> {
    let path = dir.join(file);
    if plot(&path)? {
        return Ok(Some(file));
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow::Error::new(e).context(format!("removing the stale {}", path.display())))
        }
        _ => Ok(None),
    }
}

/// Grouped bars: the median throughput of each closed-loop single-shard workload per system,
/// with min–max whiskers over rounds.
fn throughput(path: &Path, combined: &[Combined], clients: usize) -> anyhow::Result<bool> {
    let workloads = report::closed_workloads(combined, clients);
    if workloads.is_empty() {
        return Ok(false);
    }
    let top = workloads
        .iter()
        .flat_map(|&workload| {
            SYSTEMS
                .iter()
                .filter_map(move |&system| report::closed(combined, system, workload, clients))
        })
        .map(|c| c.throughput_max.max(c.throughput))
        .fold(0.0, f64::max);
    // Head room for the value labels.
    let top = if top > 0.0 { top * 1.12 } else { 1.0 };

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    let (area, legend_area) = frame(
        &root,
        &format!("Closed-loop throughput, {clients} clients, one shard"),
    )?;
    let mut chart = ChartBuilder::on(&area)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d(categories(workloads.len()), 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .max_light_lines(1)
        .x_label_formatter(&|x| category_name(&workloads, *x))
        .y_label_formatter(&|y| fmt_si(*y))
        .y_desc("throughput (ops/s, median over rounds)")
        .axis_desc_style((FONT, DESC_PT))
        .label_style((FONT, LABEL_PT))
        .draw()?;

    for (k, system) in SYSTEMS.into_iter().enumerate() {
        let color = color(system);
        let offset = if k == 0 { -0.2 } else { 0.2 };
        let bars: Vec<(f64, &Combined)> = workloads
            .iter()
            .enumerate()
            .filter_map(|(i, &workload)| {
                report::closed(combined, system, workload, clients).map(|c| (i as f64 + offset, c))
            })
            .collect();
        chart.draw_series(bars.iter().map(|&(x, c)| {
            Rectangle::new([(x - 0.18, 0.0), (x + 0.18, c.throughput)], color.filled())
        }))?;
        // Whiskers: the slowest and the fastest round.
        let whisker = BLACK.stroke_width(2);
        chart.draw_series(
            bars.iter()
                .filter(|(_, c)| c.rounds > 1)
                .flat_map(|&(x, c)| {
                    let (low, high) = (c.throughput_min, c.throughput_max);
                    [
                        PathElement::new([(x, low), (x, high)], whisker),
                        PathElement::new([(x - 0.06, low), (x + 0.06, low)], whisker),
                        PathElement::new([(x - 0.06, high), (x + 0.06, high)], whisker),
                    ]
                }),
        )?;
        chart.draw_series(bars.iter().map(|&(x, c)| {
            EmptyElement::at((x, c.throughput_max.max(c.throughput)))
                + Text::new(fmt_si(c.throughput), (0, -4), value_style())
        }))?;
    }
    let mut entries: Vec<(String, Mark)> = SYSTEMS
        .iter()
        .map(|&system| (system.to_string(), Mark::Bar(color(system))))
        .collect();
    if combined.iter().any(|c| c.rounds > 1) {
        entries.push(("slowest and".into(), Mark::Whisker));
        entries.push(("fastest round".into(), Mark::None));
    }
    side_legend(&legend_area, &entries)?;
    root.present()?;
    Ok(true)
}

/// Per workload and system, the p50, p99 and p99.9 latency on a log axis, joined by a line.
fn latency(path: &Path, combined: &[Combined], clients: usize) -> anyhow::Result<bool> {
    let workloads = report::closed_workloads(combined, clients);
    let runs: Vec<(f64, &Combined)> = workloads
        .iter()
        .enumerate()
        .flat_map(|(i, &workload)| {
            SYSTEMS
                .into_iter()
                .enumerate()
                .filter_map(move |(k, system)| {
                    let x = i as f64 + if k == 0 { -0.15 } else { 0.15 };
                    report::closed(combined, system, workload, clients).map(|c| (x, c))
                })
        })
        .collect();
    let values = runs
        .iter()
        .flat_map(|(_, c)| [c.latency.p50_us, c.latency.p999_us]);
    let Some((low, high)) = log_bounds(values) else {
        return Ok(false);
    };

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    let (area, legend_area) = frame(
        &root,
        &format!("Closed-loop latency, {clients} clients, one shard"),
    )?;
    let mut chart = ChartBuilder::on(&area)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d(
            categories(workloads.len()),
            ticks((low..high).log_scale(), log_ticks(low, high)),
        )?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|x| category_name(&workloads, *x))
        .y_label_formatter(&|y| fmt_latency_tick(*y))
        .y_desc("latency (log scale, median over rounds)")
        .axis_desc_style((FONT, DESC_PT))
        .label_style((FONT, LABEL_PT))
        .draw()?;

    chart.draw_series(runs.iter().map(|&(x, c)| {
        PathElement::new(
            [(x, c.latency.p50_us), (x, c.latency.p999_us)],
            color(c.system).stroke_width(3),
        )
    }))?;
    chart.draw_series(
        runs.iter()
            .map(|&(x, c)| Circle::new((x, c.latency.p50_us), 6, color(c.system).filled())),
    )?;
    chart
        .draw_series(runs.iter().map(|&(x, c)| {
            TriangleMarker::new((x, c.latency.p99_us), 8, color(c.system).filled())
        }))?;
    chart
        .draw_series(runs.iter().map(|&(x, c)| {
            Cross::new((x, c.latency.p999_us), 6, color(c.system).stroke_width(3))
        }))?;
    let mut entries: Vec<(String, Mark)> = SYSTEMS
        .iter()
        .map(|&system| {
            (
                system.to_string(),
                Mark::Line {
                    color: color(system),
                    dashed: false,
                },
            )
        })
        .collect();
    entries.push(("p50".into(), Mark::Dot));
    entries.push(("p99".into(), Mark::Triangle));
    entries.push(("p99.9".into(), Mark::Cross));
    side_legend(&legend_area, &entries)?;
    root.present()?;
    Ok(true)
}

/// Aggregate write throughput against the shard count, one line per system.
fn scaling(path: &Path, report: &Report, combined: &[Combined]) -> anyhow::Result<bool> {
    let lines: Vec<(System, Vec<(usize, &Combined)>)> = SYSTEMS
        .into_iter()
        .map(|system| (system, report::scaling(combined, system)))
        .collect();
    let mut shards: Vec<usize> = lines
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(n, _)| *n))
        .collect();
    shards.sort_unstable();
    shards.dedup();
    let (Some(&first), Some(&last)) = (shards.first(), shards.last()) else {
        return Ok(false);
    };
    let top = lines
        .iter()
        .flat_map(|(_, points)| {
            points
                .iter()
                .map(|(_, c)| c.throughput_max.max(c.throughput))
        })
        .fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };
    // Shards double from one step to the next: a log₂ axis spaces them evenly.
    let x = |n: usize| (n as f64).log2();
    let (x_low, x_high) = (x(first) - 0.3, x(last) + 0.3);

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    let s = &report.settings;
    let title = format!(
        "Aggregate write throughput, {} clients per shard",
        s.clients_per_shard
    );
    let (area, legend_area) = frame(&root, &title)?;
    let mut chart = ChartBuilder::on(&area)
        .margin(10)
        .x_label_area_size(70)
        .y_label_area_size(90)
        .build_cartesian_2d(
            ticks(x_low..x_high, shards.iter().map(|&n| x(n)).collect()),
            0.0..top,
        )?;
    chart
        .configure_mesh()
        .max_light_lines(1)
        .x_label_formatter(&|x| format!("{}", x.exp2().round()))
        .y_label_formatter(&|y| fmt_si(*y))
        .x_desc(format!(
            "shards ({} replicas each, all on {} cores)",
            s.replicas, report.machine.cores
        ))
        .y_desc("throughput (ops/s, median over rounds)")
        .axis_desc_style((FONT, DESC_PT))
        .label_style((FONT, LABEL_PT))
        .draw()?;

    for (system, points) in &lines {
        let color = color(*system);
        let xy: Vec<(f64, f64)> = points.iter().map(|(n, c)| (x(*n), c.throughput)).collect();
        chart.draw_series(LineSeries::new(xy.iter().copied(), color.stroke_width(3)))?;
        chart.draw_series(xy.iter().map(|&p| Circle::new(p, 6, color.filled())))?;
        // The label goes above the point, or below it where another line is higher at the same
        // shard count, so that two close values never print over each other.
        let highest = |n: usize, y: f64| {
            lines
                .iter()
                .flat_map(|(_, points)| points.iter())
                .all(|(m, c)| *m != n || c.throughput <= y)
        };
        chart.draw_series(points.iter().map(|&(n, c)| {
            let (offset, v_pos) = if highest(n, c.throughput) {
                (-12, VPos::Bottom)
            } else {
                (12, VPos::Top)
            };
            let style = value_style().pos(Pos::new(HPos::Center, v_pos));
            EmptyElement::at((x(n), c.throughput))
                + Text::new(fmt_si(c.throughput), (0, offset), style)
        }))?;
    }
    let entries: Vec<(String, Mark)> = [
        (
            "cairn: one Raft".to_string(),
            Mark::Line {
                color: CAIRN,
                dashed: false,
            },
        ),
        ("group per shard".to_string(), Mark::None),
        (
            "etcd: its one".to_string(),
            Mark::Line {
                color: ETCD,
                dashed: false,
            },
        ),
        ("group, same load".to_string(), Mark::None),
    ]
    .into();
    side_legend(&legend_area, &entries)?;
    root.present()?;
    Ok(true)
}

/// Open-loop write latency against the offered rate: p99 (solid) and p50 (dashed) per system.
fn open_loop(path: &Path, combined: &[Combined]) -> anyhow::Result<bool> {
    let runs = report::open(combined, Workload::Write);
    let rate = |c: &Combined| match c.mode {
        Mode::Open { rate } => rate,
        Mode::Closed { .. } => 0.0,
    };
    let values = runs
        .iter()
        .flat_map(|c| [c.latency.p50_us, c.latency.p99_us]);
    let Some((low, high)) = log_bounds(values) else {
        return Ok(false);
    };
    let rate_max = runs.iter().map(|c| rate(c)).fold(0.0, f64::max) * 1.15;

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    let (area, legend_area) = frame(&root, "Open-loop writes: latency against the offered rate")?;
    let mut chart = ChartBuilder::on(&area)
        .margin(10)
        .x_label_area_size(70)
        .y_label_area_size(90)
        .build_cartesian_2d(
            0.0..rate_max,
            ticks((low..high).log_scale(), log_ticks(low, high)),
        )?;
    chart
        .configure_mesh()
        .max_light_lines(1)
        .x_label_formatter(&|x| fmt_si(*x))
        .y_label_formatter(&|y| fmt_latency_tick(*y))
        .x_desc("offered rate (writes/s)")
        .y_desc("latency from the intended start (log)")
        .axis_desc_style((FONT, DESC_PT))
        .label_style((FONT, LABEL_PT))
        .draw()?;

    let mut entries = Vec::new();
    for system in SYSTEMS {
        let color = color(system);
        let mine: Vec<&Combined> = runs
            .iter()
            .copied()
            .filter(|c| c.system == system)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let p99: Vec<(f64, f64)> = mine.iter().map(|c| (rate(c), c.latency.p99_us)).collect();
        let p50: Vec<(f64, f64)> = mine.iter().map(|c| (rate(c), c.latency.p50_us)).collect();
        chart.draw_series(LineSeries::new(p99.iter().copied(), color.stroke_width(3)))?;
        chart.draw_series(p99.iter().map(|&p| Circle::new(p, 6, color.filled())))?;
        chart.draw_series(DashedLineSeries::new(
            p50.iter().copied(),
            8,
            6,
            color.stroke_width(2),
        ))?;
        chart.draw_series(
            p50.iter()
                .map(|&p| Circle::new(p, 4, color.stroke_width(2))),
        )?;
        // Where the system fell short of the offered rate, say what it achieved.
        let short = mine.iter().filter(|c| c.throughput < rate(c) * 0.95);
        chart.draw_series(short.map(|c| {
            let text = format!("achieved {}/s", fmt_si(c.throughput));
            EmptyElement::at((rate(c), c.latency.p99_us)) + Text::new(text, (0, -12), value_style())
        }))?;
        entries.push((
            format!("{system} p99"),
            Mark::Line {
                color,
                dashed: false,
            },
        ));
        entries.push((
            format!("{system} p50"),
            Mark::Line {
                color,
                dashed: true,
            },
        ));
    }
    side_legend(&legend_area, &entries)?;
    root.present()?;
    Ok(true)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Width of the legend strip to the right of every chart.
const LEGEND_WIDTH: u32 = 180;

/// A white canvas with `title` on top, split into the chart's area and a legend strip on the
/// right, so that a legend never hides data.
fn frame<'a>(root: &Area<'a>, title: &str) -> anyhow::Result<(Area<'a>, Area<'a>)> {
    root.fill(&WHITE)?;
    let below = root.margin(12, 0, 0, 0).titled(title, (FONT, CAPTION_PT))?;
    Ok(below.split_horizontally(SIZE.0 - LEGEND_WIDTH))
}

/// What a legend entry shows left of its label.
#[derive(Clone, Copy, Debug)]
enum Mark {
    Bar(RGBColor),
    Line {
        color: RGBColor,
        dashed: bool,
    },
    Whisker,
    Dot,
    Triangle,
    Cross,
    /// A continuation line of the previous entry's label.
    None,
}

/// A legend drawn in its own strip: one row per entry, top-aligned with the chart.
fn side_legend(area: &Area<'_>, entries: &[(String, Mark)]) -> anyhow::Result<()> {
    const ROW: i32 = 26;
    let (x, mut y) = (8, 40);
    let label = (FONT, LABEL_PT)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (text, mark) in entries {
        if !matches!(mark, Mark::None) {
            // A little air above each new entry.
            y += 6;
        }
        let middle = (x + 12, y);
        match *mark {
            Mark::Bar(color) => {
                area.draw(&Rectangle::new(
                    [(x, y - 8), (x + 24, y + 8)],
                    color.filled(),
                ))?;
            }
            Mark::Line {
                color,
                dashed: false,
            } => {
                area.draw(&PathElement::new(
                    [(x, y), (x + 24, y)],
                    color.stroke_width(3),
                ))?;
            }
            Mark::Line {
                color,
                dashed: true,
            } => {
                for from in [x, x + 16] {
                    area.draw(&PathElement::new(
                        [(from, y), (from + 8, y)],
                        color.stroke_width(2),
                    ))?;
                }
            }
            Mark::Whisker => {
                let style = BLACK.stroke_width(2);
                area.draw(&PathElement::new([(x + 12, y - 9), (x + 12, y + 9)], style))?;
                area.draw(&PathElement::new([(x + 7, y - 9), (x + 17, y - 9)], style))?;
                area.draw(&PathElement::new([(x + 7, y + 9), (x + 17, y + 9)], style))?;
            }
            Mark::Dot => area.draw(&Circle::new(middle, 6, BLACK.filled()))?,
            Mark::Triangle => area.draw(&TriangleMarker::new(middle, 8, BLACK.filled()))?,
            Mark::Cross => area.draw(&Cross::new(middle, 6, BLACK.stroke_width(3)))?,
            Mark::None => {}
        }
        area.draw(&Text::new(text.as_str(), (x + 34, y), label.clone()))?;
        y += ROW;
    }
    Ok(())
}

fn value_style() -> TextStyle<'static> {
    (FONT, VALUE_PT)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom))
}

/// An axis with ticks (and grid lines) at exactly the given values, which plotters' own
/// `WithKeyPoints` cannot do with a label formatter.
struct Ticks<R> {
    inner: R,
    ticks: Vec<f64>,
}

impl<R: Ranged<ValueType = f64>> Ranged for Ticks<R> {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // The light (minor) grid lines would fall between the categories: none.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.inner.range()
    }
}

fn ticks<A>(range: A, ticks: Vec<f64>) -> Ticks<A::CoordDescType>
where
    A: AsRangedCoord<Value = f64>,
    A::CoordDescType: Ranged<ValueType = f64>,
{
    Ticks {
        inner: range.into(),
        ticks,
    }
}

/// An x axis of `n` categories, one per integer from 0, with a tick under each.
fn categories(n: usize) -> Ticks<RangedCoordf64> {
    ticks(-0.5..n as f64 - 0.5, (0..n).map(|i| i as f64).collect())
}

fn category_name(workloads: &[Workload], x: f64) -> String {
    let i = x.round();
    if i >= 0.0 {
        workloads
            .get(i as usize)
            .map_or_else(String::new, |w| w.name().to_string())
    } else {
        String::new()
    }
}

/// Bounds of a log axis holding every (positive, finite) value: whole powers of ten around them.
fn log_bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (low, high) = values.filter(|v| v.is_finite() && *v > 0.0).fold(
        None,
        |bounds: Option<(f64, f64)>, v| match bounds {
            None => Some((v, v)),
            Some((low, high)) => Some((low.min(v), high.max(v))),
        },
    )?;
    let low = 10f64.powf(low.log10().floor());
    let mut high = 10f64.powf(high.log10().ceil());
    if high <= low {
        high = low * 10.0;
    }
    Some((low, high))
}

/// Ticks of a log axis from `low` to `high` (powers of ten): 1, 2 and 5 times each power when
/// the axis spans few decades, the powers alone otherwise.
fn log_ticks(low: f64, high: f64) -> Vec<f64> {
    let decades = (high / low).log10().round().max(1.0) as i32;
    let steps: &[f64] = if decades <= 3 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    let mut ticks = Vec::new();
    for decade in 0..=decades {
        for step in steps {
            let tick = low * 10f64.powi(decade) * step;
            if tick <= high * 1.0001 {
                ticks.push(tick);
            }
        }
    }
    ticks
}

/// A short number for an axis or a bar: `950`, `12.3k`, `1.2M`.
fn fmt_si(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1e6 {
        trim(format!("{:.1}", value / 1e6)) + "M"
    } else if magnitude >= 1e4 {
        format!("{:.0}k", value / 1e3)
    } else if magnitude >= 1e3 {
        trim(format!("{:.1}", value / 1e3)) + "k"
    } else {
        format!("{value:.0}")
    }
}

/// A log-axis tick (1, 2 or 5 times a power of ten microseconds): `50 µs`, `2 ms`, `1 s`.
fn fmt_latency_tick(us: f64) -> String {
    let round = |v: f64| (v * 100.0).round() / 100.0;
    if us >= 1e6 {
        format!("{} s", round(us / 1e6))
    } else if us >= 1e3 {
        format!("{} ms", round(us / 1e3))
    } else {
        format!("{} µs", round(us))
    }
}

/// `12.0` → `12`.
fn trim(number: String) -> String {
    number
        .strip_suffix(".0")
        .map_or(number.clone(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_numbers_are_short() {
        assert_eq!(fmt_si(950.0), "950");
        assert_eq!(fmt_si(2_000.0), "2k");
        assert_eq!(fmt_si(12_345.0), "12k");
        assert_eq!(fmt_si(1_250.0), "1.2k");
        assert_eq!(fmt_si(3_400_000.0), "3.4M");
        assert_eq!(
            log_bounds([72.0, 58_000.0].into_iter()),
            Some((10.0, 100_000.0))
        );
        assert_eq!(
            log_ticks(100.0, 1_000.0),
            vec![100.0, 200.0, 500.0, 1_000.0]
        );
        assert_eq!(fmt_latency_tick(50.0), "50 µs");
        assert_eq!(fmt_latency_tick(2_000.0), "2 ms");
        assert_eq!(fmt_latency_tick(1_000_000.0), "1 s");
    }
}
