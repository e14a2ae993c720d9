//! The recall chart of `bench --png`: recall@k against search time per
//! query, one line per index kind, each point labelled with its nprobe.
//! Drawn with plotters into an RGB buffer and encoded with png; the text
//! uses a bundled subset of DejaVu Sans (assets/fonts/LICENSE), so no
//! system font is needed.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::{Error, Result};

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");
const SIZE: (u32, u32) = (960, 640);

/// One index kind's curve: (ms per 1 000 queries, recall, nprobe), by nprobe.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64, usize)>,
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{}: cannot draw the chart: {e}", path.display()))
}

/// Draw `series` into the PNG file `path` (written whole or not at all).
pub fn recall_png(path: &Path, title: &str, k: usize, series: &[Series]) -> Result<()> {
    register_font("sans-serif", FontStyle::Normal, FONT).map_err(|_| plot_err(path, "font"))?;
    let pts = || series.iter().flat_map(|s| s.points.iter());
    let finite = |v: f64| v.is_finite() && v > 0.0;
    let (mut x0, mut x1) = pts()
        .filter(|p| finite(p.0))
        .fold((f64::INFINITY, 0f64), |(a, b), p| (a.min(p.0), b.max(p.0)));
    if !finite(x0) || !finite(x1) {
        return Err(plot_err(path, "no timed search to draw"));
    }
    x0 /= 1.3;
    x1 *= 1.3;
    let y0 = pts().map(|p| p.1).fold(1.0f64, f64::min);
    let y0 = ((y0 - 0.05).max(0.0) * 20.0).floor() / 20.0;
    let (w, h) = SIZE;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d((x0..x1).log_scale(), y0..1.0f64)
            .map_err(|e| plot_err(path, e))?;
        chart
            .configure_mesh()
            .x_desc("search time, ms per 1000 queries (log scale)")
            .y_desc(format!("recall@{k}"))
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 17))
            .draw()
            .map_err(|e| plot_err(path, e))?;
        for (i, s) in series.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            let line: Vec<(f64, f64)> = s
                .points
                .iter()
                .filter(|p| finite(p.0))
                .map(|p| (p.0, p.1))
                .collect();
            chart
                .draw_series(LineSeries::new(line.clone(), colour.stroke_width(2)))
                .map_err(|e| plot_err(path, e))?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(2))
                });
            chart
                .draw_series(s.points.iter().filter(|p| finite(p.0)).map(|&(x, y, p)| {
                    EmptyElement::at((x, y))
                        + Circle::new((0, 0), 4, colour.filled())
                        + Text::new(format!("{p}"), (6, -16), ("sans-serif", 13))
                }))
                .map_err(|e| plot_err(path, e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .draw()
            .map_err(|e| plot_err(path, e))?;
        root.present().map_err(|e| plot_err(path, e))?;
    }
    crate::io::write_atomic(path, |out| {
        let mut enc = png::Encoder::new(out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(std::io::Error::other)?;
        wr.write_image_data(&buf).map_err(std::io::Error::other)?;
        wr.finish().map_err(std::io::Error::other)
    })
}
