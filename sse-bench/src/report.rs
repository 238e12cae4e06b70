//! What a run found: one table per workload with each system's figure and how `sse` compares,
//! the raw results as JSON, and a chart of fan-out deliveries/s against subscribers.

use std::{fmt::Write as _, path::Path};

use plotters::prelude::*;
use serde::Serialize;

use crate::workloads::{Capacity, Churn, FanOut, Groups, Latency, Pages};

/// Everything measured on one system.
#[derive(Serialize, Default)]
pub(crate) struct SystemResult {
    pub(crate) name: String,
    /// Why a workload (or the whole system) gave no figure.
    pub(crate) errors: Vec<String>,
    pub(crate) fanout: Vec<FanOut>,
    pub(crate) latency: Option<Latency>,
    pub(crate) groups: Option<Groups>,
    /// Many groups, published inside the server in batches.
    pub(crate) groups_in_process: Option<Groups>,
    pub(crate) capacity: Vec<Capacity>,
    pub(crate) churn: Option<Churn>,
    /// Fan-out and capacity with each stream opened on a connection that loaded a page first.
    pub(crate) fanout_after_page: Vec<FanOut>,
    pub(crate) capacity_after_page: Vec<Capacity>,
    pub(crate) pages: Vec<Pages>,
}

impl SystemResult {
    /// Whether every fan-out, latency and many-groups event reached every subscriber.
    pub(crate) fn delivered_everything(&self) -> bool {
        self.fanout
            .iter()
            .chain(&self.fanout_after_page)
            .all(|f| f.delivered == f.expected && f.published == f.events)
            && self.latency.iter().all(|l| l.delivered == l.expected)
            && self
                .groups
                .iter()
                .chain(&self.groups_in_process)
                .all(|g| g.delivered == g.expected)
    }
}

/// A system's figure for one column: the value compared, and how it is shown.
type Figure<'a> = Box<dyn Fn(&SystemResult) -> Option<(f64, String)> + 'a>;

/// A figure and whether more of it is better.
struct Column<'a> {
    title: String,
    better: Better,
    figure: Figure<'a>,
}

#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
}

/// The markdown tables of a run; `sse` is the system named `sse`.
pub(crate) fn tables(results: &[SystemResult]) -> String {
    let mut out = String::new();
    let ours = results.iter().find(|r| r.name == "sse");
    fan_out_tables(&mut out, results, ours, (|r| &r.fanout, ""));
    fan_out_tables(
        &mut out,
        results,
        ours,
        (
            |r| &r.fanout_after_page,
            ", each stream opened after a page on its connection",
        ),
    );
    let latency = |pick: fn(&Latency) -> f64| {
        move |r: &SystemResult| {
            let l = r.latency.as_ref()?;
            Some((pick(l), format!("{:.1}", pick(l))))
        }
    };
    if let Some(l) = results.iter().find_map(|r| r.latency.as_ref()) {
        let title = format!(
            "Latency, {} subscribers, {} events/s",
            l.subscribers, l.rate
        );
        let delivered = |r: &SystemResult| {
            let l = r.latency.as_ref()?;
            Some((l.delivered as f64, share(l.delivered, l.expected)))
        };
        table(
            &mut out,
            &title,
            results,
            ours,
            vec![
                Column {
                    title: "p50 ms".into(),
                    better: Better::Lower,
                    figure: Box::new(latency(|l| l.p50_ms)),
                },
                Column {
                    title: "p99 ms".into(),
                    better: Better::Lower,
                    figure: Box::new(latency(|l| l.p99_ms)),
                },
                Column {
                    title: "max ms".into(),
                    better: Better::Lower,
                    figure: Box::new(latency(|l| l.max_ms)),
                },
                Column {
                    title: "server CPU µs/delivery".into(),
                    better: Better::Lower,
                    figure: Box::new(move |r: &SystemResult| {
                        let cpu = r.latency.as_ref()?.server_cpu_us_per_delivery;
                        Some((cpu, format!("{cpu:.2}")))
                    }),
                },
                Column {
                    title: "delivered".into(),
                    better: Better::Higher,
                    figure: Box::new(delivered),
                },
            ],
        );
    }
    groups_table(
        &mut out,
        results,
        ours,
        (|r| r.groups.as_ref(), "one HTTP publish each"),
    );
    groups_table(
        &mut out,
        results,
        ours,
        (
            |r| r.groups_in_process.as_ref(),
            "published inside the server, in batches",
        ),
    );
    capacity_table(&mut out, results, ours, (|r| &r.capacity, ""));
    capacity_table(
        &mut out,
        results,
        ours,
        (
            |r| &r.capacity_after_page,
            ", each opened after a page on its connection",
        ),
    );
    pages_table(&mut out, results, ours);
    if let Some(c) = results.iter().find_map(|r| r.churn.as_ref()) {
        let rate = |r: &SystemResult| {
            let c = r.churn.as_ref()?;
            Some((c.per_sec, count(c.per_sec)))
        };
        let rss = |r: &SystemResult| {
            let c = r.churn.as_ref()?;
            Some((
                c.rss_after_mb,
                format!("{:.0} → {:.0}", c.rss_before_mb, c.rss_after_mb),
            ))
        };
        let done = |r: &SystemResult| {
            let c = r.churn.as_ref()?;
            Some((
                c.cycles as f64,
                format!("{} ({} failed)", c.cycles, c.failed),
            ))
        };
        table(
            &mut out,
            &format!(
                "Churn: connect + disconnect, up to {} cycles",
                c.cycles.max(1)
            ),
            results,
            ours,
            vec![
                Column {
                    title: "cycles/s".into(),
                    better: Better::Higher,
                    figure: Box::new(rate),
                },
                Column {
                    title: "RSS MB before → after".into(),
                    better: Better::Lower,
                    figure: Box::new(rss),
                },
                Column {
                    title: "cycles".into(),
                    better: Better::Higher,
                    figure: Box::new(done),
                },
            ],
        );
    }
    let problems: Vec<String> = results
        .iter()
        .flat_map(|r| r.errors.iter().map(move |e| format!("- {}: {e}", r.name)))
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(
            out,
            "### Not measured, and why\n\n{}\n",
            problems.join("\n")
        );
    }
    out
}

/// One table per fan-out size, of the fan-outs `fanouts` picks; `kind` ends their titles.
fn fan_out_tables(
    out: &mut String,
    results: &[SystemResult],
    ours: Option<&SystemResult>,
    (fanouts, kind): (fn(&SystemResult) -> &Vec<FanOut>, &str),
) {
    let mut sizes: Vec<usize> = results
        .iter()
        .flat_map(|r| fanouts(r).iter().map(|f| f.subscribers))
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    for n in sizes {
        let figure = move |r: &SystemResult| {
            let f = fanouts(r).iter().find(|f| f.subscribers == n)?;
            let mut shown = format!("{} ({})", count(f.per_sec), share(f.delivered, f.expected));
            if f.rounds_per_sec.len() > 1 {
                let rounds = f.rounds_per_sec.iter().copied();
                let slowest = rounds.clone().fold(f64::INFINITY, f64::min);
                let fastest = rounds.fold(0.0, f64::max);
                shown += &format!(", rounds {}–{}", count(slowest), count(fastest));
            }
            if f.opened < f.subscribers {
                shown += &format!(", {} streams opened", f.opened);
            }
            if f.published < f.events {
                shown += &format!(", {} of {} events published in time", f.published, f.events);
            }
            Some((f.per_sec, shown))
        };
        table(
            out,
            &format!("Fan-out, {n} subscribers, one group{kind}"),
            results,
            ours,
            vec![
                Column {
                    title: "deliveries/s, median round (delivered, range)".into(),
                    better: Better::Higher,
                    figure: Box::new(figure),
                },
                Column {
                    title: "server CPU µs/delivery, all rounds (load generator's)".into(),
                    better: Better::Lower,
                    figure: Box::new(move |r: &SystemResult| {
                        let f = fanouts(r).iter().find(|f| f.subscribers == n)?;
                        let cost = f.server_cpu_us_per_delivery;
                        let generator = f.generator_cpu_us_per_delivery;
                        Some((cost, format!("{cost:.3} ({generator:.3})")))
                    }),
                },
            ],
        );
    }
}

/// The many-groups table of the runs `groups` picks; `how` says how they published.
fn groups_table(
    out: &mut String,
    results: &[SystemResult],
    ours: Option<&SystemResult>,
    (groups, how): (fn(&SystemResult) -> Option<&Groups>, &str),
) {
    if let Some(g) = results.iter().find_map(groups) {
        let figure = |r: &SystemResult| {
            let g = groups(r)?;
            Some((
                g.per_sec,
                format!("{} ({})", count(g.per_sec), share(g.delivered, g.expected)),
            ))
        };
        let title = format!(
            "Many groups, {} groups × 1 subscriber, random groups, {how}",
            g.groups
        );
        let cpu = |r: &SystemResult| {
            let cost = groups(r)?.server_cpu_us_per_delivery;
            Some((cost, format!("{cost:.1}")))
        };
        table(
            out,
            &title,
            results,
            ours,
            vec![
                Column {
                    title: "deliveries/s (delivered)".into(),
                    better: Better::Higher,
                    figure: Box::new(figure),
                },
                Column {
                    title: "server CPU µs/delivery".into(),
                    better: Better::Lower,
                    figure: Box::new(cpu),
                },
            ],
        );
    }
}

/// The capacity table of the figures `capacities` picks; `kind` ends its title.
fn capacity_table(
    out: &mut String,
    results: &[SystemResult],
    ours: Option<&SystemResult>,
    (capacities, kind): (fn(&SystemResult) -> &Vec<Capacity>, &str),
) {
    let mut wanted: Vec<usize> = results
        .iter()
        .flat_map(|r| capacities(r).iter().map(|c| c.wanted))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let columns = wanted
        .iter()
        .flat_map(|&n| {
            let at = move |r: &SystemResult| capacities(r).iter().find(|c| c.wanted == n).cloned();
            [
                Column {
                    title: format!("KB/stream at {n}"),
                    better: Better::Lower,
                    figure: Box::new(move |r: &SystemResult| {
                        let c = at(r).filter(|c| c.opened == c.wanted)?;
                        Some((c.per_stream_kb, format!("{:.1}", c.per_stream_kb)))
                    })
                        as Box<dyn Fn(&SystemResult) -> Option<(f64, String)>>,
                },
                Column {
                    title: format!("RSS MB at {n} (opened)"),
                    better: Better::Lower,
                    figure: Box::new(move |r: &SystemResult| {
                        let c = at(r)?;
                        Some((c.rss_mb, format!("{:.0} ({})", c.rss_mb, c.opened)))
                    }),
                },
            ]
        })
        .collect();
    if !wanted.is_empty() {
        table(
            out,
            &format!("Capacity: idle memory per open stream (server RSS delta / N){kind}"),
            results,
            ours,
            columns,
        );
    }
}

/// Pages per second and server CPU per page, on kept-alive and on new connections.
fn pages_table(out: &mut String, results: &[SystemResult], ours: Option<&SystemResult>) {
    let Some(clients) = results
        .iter()
        .find_map(|r| r.pages.first().map(|p| p.clients))
    else {
        return;
    };
    let columns = [true, false]
        .into_iter()
        .flat_map(|keep_alive| {
            let kind = if keep_alive {
                "kept alive"
            } else {
                "new connection each"
            };
            let at = move |r: &SystemResult| {
                r.pages.iter().find(|p| p.keep_alive == keep_alive).cloned()
            };
            [
                Column {
                    title: format!("pages/s, {kind}"),
                    better: Better::Higher,
                    figure: Box::new(move |r: &SystemResult| {
                        let p = at(r)?;
                        let failed = match p.failed {
                            0 => String::new(),
                            n => format!(" ({n} failed)"),
                        };
                        Some((p.per_sec, format!("{}{failed}", count(p.per_sec))))
                    })
                        as Box<dyn Fn(&SystemResult) -> Option<(f64, String)>>,
                },
                Column {
                    title: format!("server CPU µs/page, {kind}"),
                    better: Better::Lower,
                    figure: Box::new(move |r: &SystemResult| {
                        let p = at(r)?;
                        Some((
                            p.server_cpu_us_per_page,
                            format!("{:.1}", p.server_cpu_us_per_page),
                        ))
                    }),
                },
            ]
        })
        .collect();
    table(
        out,
        &format!("Pages: a small page loaded by {clients} concurrent clients"),
        results,
        ours,
        columns,
    );
}

/// One table: a row per system, each column's figure and then `sse`'s advantage over it
/// (how many times better `sse` is: above 1 means `sse` wins).
fn table(
    out: &mut String,
    title: &str,
    results: &[SystemResult],
    ours: Option<&SystemResult>,
    columns: Vec<Column<'_>>,
) {
    let _ = writeln!(out, "### {title}\n");
    let mut head = String::from("| system |");
    let mut rule = String::from("|---|");
    for column in &columns {
        let _ = write!(head, " {} | sse × |", column.title);
        rule.push_str("---:|---:|");
    }
    let _ = writeln!(out, "{head}\n{rule}");
    for result in results {
        let mut row = format!("| {} |", result.name);
        for column in &columns {
            match (column.figure)(result) {
                Some((value, shown)) => {
                    let ours = ours.and_then(|o| (column.figure)(o)).map(|(v, _)| v);
                    let advantage = ours.map(|o| match column.better {
                        Better::Higher => o / value,
                        Better::Lower => value / o,
                    });
                    let advantage = match advantage {
                        Some(a) if a.is_finite() => format!("{a:.2}"),
                        _ => "–".to_owned(),
                    };
                    let _ = write!(row, " {shown} | {advantage} |");
                }
                None => row.push_str(" – | – |"),
            }
        }
        let _ = writeln!(out, "{row}");
    }
    out.push('\n');
}

fn count(per_sec: f64) -> String {
    match per_sec {
        x if x >= 1e6 => format!("{:.2} M", x / 1e6),
        x if x >= 1e3 => format!("{:.1} k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

fn share(delivered: u64, expected: u64) -> String {
    if delivered == expected {
        "all".to_owned()
    } else {
        format!("{:.1}%", 100.0 * delivered as f64 / expected.max(1) as f64)
    }
}

/// Fan-out deliveries/s against subscribers, a line per system, as SVG.
pub(crate) fn chart(results: &[SystemResult], path: &Path) -> Result<(), String> {
    let points: Vec<(&str, Vec<(f64, f64)>)> = results
        .iter()
        .filter(|r| !r.fanout.is_empty())
        .map(|r| {
            let line = r
                .fanout
                .iter()
                .map(|f| (f.subscribers as f64, f.per_sec))
                .collect();
            (r.name.as_str(), line)
        })
        .collect();
    let all = || points.iter().flat_map(|(_, line)| line.iter());
    let (Some(min_n), Some(max_n)) = (
        all().map(|p| p.0).reduce(f64::min),
        all().map(|p| p.0).reduce(f64::max),
    ) else {
        // Nothing to draw (fan-out was not measured, or only after a page).
        return Ok(());
    };
    let max_rate = all().map(|p| p.1).fold(1.0, f64::max);
    let min_rate = all().map(|p| p.1).fold(max_rate, f64::min).max(1.0);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    let plot = |e: DrawingAreaErrorKind<_>| e.to_string();
    root.fill(&WHITE).map_err(plot)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Fan-out: deliveries/s vs subscribers (one group)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (min_n * 0.8..max_n * 1.25).log_scale(),
            (min_rate * 0.5..max_rate * 2.0).log_scale(),
        )
        .map_err(plot)?;
    chart
        .configure_mesh()
        .x_desc("subscribers")
        .y_desc("deliveries/s")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| count(*v))
        .draw()
        .map_err(plot)?;
    for (i, (name, line)) in points.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let style = color.stroke_width(if *name == "sse" { 3 } else { 2 });
        chart
            .draw_series(LineSeries::new(line.iter().copied(), style))
            .map_err(plot)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(line.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(plot)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerLeft)
        .draw()
        .map_err(plot)?;
    root.present().map_err(plot)?;
    Ok(())
}
