//! The picture itself: two spectrogram panels on one colour scale, a band with the
//! speech segments over the bottom one, a colour bar, and the title.
//!
//! Drawn by plotters into an RGB buffer, and encoded here by `png`: as an indexed
//! (palette) PNG when the picture has at most 256 colours, which makes the file about
//! half as large. The colour scale is quantised to [`LEVELS`] colours and the greys of
//! the text's anti-aliasing to 64, so that is the usual case; otherwise it is RGB.
//!
//! Text uses only the DejaVu Sans font embedded below (assets/fonts/README.md),
//! registered with plotters' `ab_glyph` backend: no system font is looked up.

use std::collections::HashMap;
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use plotters::style::{register_font, FontStyle};

use super::{Picture, PlotSize};

/// The embedded font.
static FONT: &[u8] = include_bytes!("../../../../assets/fonts/DejaVuSans.ttf");

/// Range of the colour scale, dB below the louder panel's maximum.
const RANGE_DB: f32 = 90.0;

/// Levels of the colour scale (a palette PNG holds 256 colours with the text's).
const LEVELS: f32 = 128.0;

/// Colour of the speech segments, and of the band they are drawn on.
const SPEECH: RGBColor = RGBColor(230, 97, 1);
const BAND: RGBColor = RGBColor(235, 235, 235);

fn register() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| anyhow!("the embedded font cannot be read"));
    });
    result
}

/// Any plotters error as an anyhow one (plotters' errors borrow the backend's type).
fn drawing<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("cannot draw the plot: {e:?}")
}

/// The picture as PNG bytes.
pub fn png(size: PlotSize, picture: &Picture<'_>) -> Result<Vec<u8>> {
    register()?;
    let (w, h) = (size.width, size.height);
    let mut rgb = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw(&root, size, picture)?;
        root.present().map_err(drawing)?;
    }
    encode(&rgb, w, h)
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    size: PlotSize,
    picture: &Picture<'_>,
) -> Result<()> {
    let scale = (f64::from(size.width) / 1200.0)
        .min(f64::from(size.height) / 800.0)
        .clamp(0.4, 3.0);
    let px = |v: f64| (v * scale).round().max(1.0) as u32;
    let font = |v: f64| ("sans-serif", (v * scale).max(9.0));

    root.fill(&WHITE).map_err(drawing)?;
    let (title, body) = root.split_vertically(px(64.0));
    title
        .draw_text(
            &picture.title,
            &font(22.0).into_text_style(&title).color(&BLACK),
            (px(12.0) as i32, px(6.0) as i32),
        )
        .map_err(drawing)?;
    title
        .draw_text(
            &picture.figures,
            &font(17.0).into_text_style(&title).color(&BLACK),
            (px(12.0) as i32, px(36.0) as i32),
        )
        .map_err(drawing)?;
    let (panels, bar) = body.split_horizontally(size.width - px(120.0));

    let (top, bottom) = (picture.top.1, picture.bottom.1);
    let duration_s = top.duration_s().max(bottom.duration_s()).max(1e-3);
    let top_khz = f64::from(top.rate().max(bottom.rate())) / 2000.0;

    let band_h = if picture.speech.is_some() {
        px(26.0)
    } else {
        0
    };
    let (_, panels_h) = panels.dim_in_pixel();
    let half = (panels_h.saturating_sub(band_h)) / 2;
    let (upper, rest) = panels.split_vertically(half);
    let (band, lower) = rest.split_vertically(band_h);

    let label_w = px(70.0);
    let build = |area: &DrawingArea<DB, Shift>, name: &str, x_desc: bool| {
        let mut b = ChartBuilder::on(area);
        b.caption(name, font(17.0))
            .margin_left(px(8.0))
            .margin_right(px(16.0))
            .x_label_area_size(px(if x_desc { 48.0 } else { 30.0 }))
            .y_label_area_size(label_w);
        b.build_cartesian_2d(0.0..duration_s, 0.0..top_khz)
    };
    let mut charts = Vec::new();
    for (area, (name, _), x_desc) in [(&upper, picture.top, false), (&lower, picture.bottom, true)]
    {
        charts.push((build(area, name, x_desc).map_err(drawing)?, x_desc));
    }

    // One grid per panel, each of its own plotting area's size (the lower panel's is
    // shorter: it carries the time axis's title), and one colour scale for both.
    let dims: Vec<(usize, usize)> = charts
        .iter()
        .map(|(chart, _)| {
            let (w, h) = chart.plotting_area().dim_in_pixel();
            (w as usize, h as usize)
        })
        .collect();
    let grids = [
        top.grid(dims[0].0, dims[0].1, duration_s, top_khz * 1000.0),
        bottom.grid(dims[1].0, dims[1].1, duration_s, top_khz * 1000.0),
    ];
    let max_db = grids
        .iter()
        .flatten()
        .flatten()
        .fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    let max_db = if max_db.is_finite() {
        max_db.ceil()
    } else {
        0.0
    };
    let min_db = max_db - RANGE_DB;

    for (((chart, x_desc), grid), &(gw, gh)) in charts.iter_mut().zip(&grids).zip(&dims) {
        let area = chart.plotting_area().strip_coord_spec();
        for y in 0..gh {
            for x in 0..gw {
                if let Some(v) = grid[y * gw + x] {
                    area.draw_pixel((x as i32, y as i32), &colour(v, min_db, max_db))
                        .map_err(drawing)?;
                }
            }
        }
        let mut mesh = chart.configure_mesh();
        mesh.disable_mesh()
            .label_style(font(14.0))
            .axis_desc_style(font(15.0))
            .y_desc("frequency (kHz)")
            .x_label_formatter(&|t| format!("{t:.1}"))
            .y_label_formatter(&|f| format!("{f:.0}"));
        if *x_desc {
            mesh.x_desc("time (s)");
        }
        mesh.draw().map_err(drawing)?;
    }

    if let Some(speech) = picture.speech {
        let mut chart = ChartBuilder::on(&band)
            .margin_left(px(8.0))
            .margin_right(px(16.0))
            .y_label_area_size(label_w)
            .build_cartesian_2d(0.0..duration_s, 0.0..1.0)
            .map_err(drawing)?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, 0.15), (duration_s, 0.85)],
                BAND.filled(),
            )))
            .map_err(drawing)?;
        chart
            .draw_series(speech.iter().map(|s| {
                Rectangle::new(
                    [(s.start_s.max(0.0), 0.15), (s.end_s.min(duration_s), 0.85)],
                    SPEECH.filled(),
                )
            }))
            .map_err(drawing)?;
        band.draw_text(
            "speech",
            &font(14.0).into_text_style(&band).color(&BLACK),
            (px(12.0) as i32, px(5.0) as i32),
        )
        .map_err(drawing)?;
    }

    colour_bar(&bar, min_db, max_db, half, px, font)
}

/// The colour scale beside the upper panel, labelled in dB.
fn colour_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    min_db: f32,
    max_db: f32,
    height: u32,
    px: impl Fn(f64) -> u32,
    font: impl Fn(f64) -> (&'static str, f64),
) -> Result<()> {
    let (area, _) = area.split_vertically(height);
    let mut chart = ChartBuilder::on(&area)
        .caption("dBFS", font(15.0))
        .margin_right(px(8.0))
        .x_label_area_size(px(30.0))
        .right_y_label_area_size(px(52.0))
        .build_cartesian_2d(0.0..1.0, f64::from(min_db)..f64::from(max_db))
        .map_err(drawing)?
        .set_secondary_coord(0.0..1.0, f64::from(min_db)..f64::from(max_db));
    let steps = 256;
    let step = f64::from(max_db - min_db) / f64::from(steps);
    chart
        .draw_series((0..steps).map(|i| {
            let lo = f64::from(min_db) + step * f64::from(i);
            Rectangle::new(
                [(0.0, lo), (1.0, lo + step)],
                colour((lo + step / 2.0) as f32, min_db, max_db).filled(),
            )
        }))
        .map_err(drawing)?;
    chart
        .configure_secondary_axes()
        .label_style(font(14.0))
        .x_labels(0)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(drawing)?;
    Ok(())
}

/// The colour of `db` on the scale `min_db..max_db`, in [`LEVELS`] steps.
fn colour(db: f32, min_db: f32, max_db: f32) -> RGBColor {
    let t = ((db - min_db) / (max_db - min_db)).clamp(0.0, 1.0);
    ViridisRGB.get_color((t * (LEVELS - 1.0)).round() / (LEVELS - 1.0))
}

/// The RGB picture as a PNG: indexed when it has at most 256 colours.
fn encode(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    let encoding = |e: png::EncodingError| anyhow!("cannot encode the plot: {e}");
    let mut palette: HashMap<[u8; 3], u8> = HashMap::new();
    let mut indices = Vec::with_capacity(rgb.len() / 3);
    for p in rgb.chunks_exact(3) {
        let key = if p[0] == p[1] && p[1] == p[2] {
            // A grey to the nearest multiple of 4 (white stays white): invisible.
            let v = ((u16::from(p[0]) + 2) / 4 * 4).min(255) as u8;
            [v; 3]
        } else {
            [p[0], p[1], p[2]]
        };
        let next = palette.len();
        let index = match palette.get(&key) {
            Some(&i) => i,
            None if next < 256 => {
                palette.insert(key, next as u8);
                next as u8
            }
            None => {
                palette.clear();
                break;
            }
        };
        indices.push(index);
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::High);
    let data = if palette.is_empty() {
        encoder.set_color(png::ColorType::Rgb);
        rgb
    } else {
        let mut table = vec![0u8; palette.len() * 3];
        for (c, &i) in &palette {
            table[usize::from(i) * 3..usize::from(i) * 3 + 3].copy_from_slice(c);
        }
        encoder.set_color(png::ColorType::Indexed);
        encoder.set_palette(table);
        &indices
    };
    let mut writer = encoder.write_header().map_err(encoding)?;
    writer.write_image_data(data).map_err(encoding)?;
    writer.finish().map_err(encoding)?;
    Ok(out)
}
