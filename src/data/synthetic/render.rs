//! Drawing a sampled scene.

use image::{Rgb, RgbImage};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::scene::{Object, Scene, Size, COLOURS};

/// Whether the point `(u, v)` (object frame, the object spanning about `[-1, 1]²`) is inside
/// shape `shape` (an index into [`SHAPES`](super::scene::SHAPES)).
fn inside(shape: usize, u: f32, v: f32) -> bool {
    let r2 = u * u + v * v;
    match shape {
        0 => r2 <= 1.0,                                       // circle
        1 => u.abs().max(v.abs()) <= 0.82,                    // square
        2 => v <= 0.75 && u.abs() <= 0.95 * (v + 0.95) / 1.7, // triangle, apex up
        3 => {
            // star: five points, radius between 0.42 and 1 with the angle
            let a = v.atan2(u) + std::f32::consts::FRAC_PI_2;
            let t = (a * 5.0 / std::f32::consts::TAU).rem_euclid(1.0);
            let spike = 1.0 - 2.0 * (t - 0.5).abs();
            r2.sqrt() <= 0.42 + 0.58 * spike * spike
        }
        4 => (0.36..=1.0).contains(&r2), // ring
        5 => {
            let (a, b) = (u.abs(), v.abs());
            (a <= 0.3 && b <= 0.95) || (b <= 0.3 && a <= 0.95) // cross
        }
        6 => u.abs() + v.abs() <= 1.0, // diamond
        7 => {
            let (a, b) = (u.abs(), v.abs());
            b <= 0.866 && a + b * 0.577 <= 1.0 // hexagon
        }
        8 => {
            // heart: (x² + y² - 1)³ - x² y³ <= 0
            let x = u * 1.25;
            let y = -v * 1.25 + 0.25;
            let q = x * x + y * y - 1.0;
            q * q * q - x * x * y * y * y <= 0.0
        }
        _ => r2 <= 1.0 && (u - 0.45).powi(2) + (v + 0.25).powi(2) > 0.72, // crescent
    }
}

fn mix(a: [u8; 3], b: [u8; 3], t: f32) -> [u8; 3] {
    [0, 1, 2].map(|c| (a[c] as f32 * (1.0 - t) + b[c] as f32 * t).round() as u8)
}

fn scale(a: [u8; 3], k: f32) -> [u8; 3] {
    a.map(|x| (x as f32 * k).clamp(0.0, 255.0) as u8)
}

fn jitter(rng: &mut ChaCha8Rng, c: [u8; 3], amount: i32) -> [u8; 3] {
    c.map(|x| (x as i32 + rng.random_range(-amount..=amount)).clamp(0, 255) as u8)
}

/// Paints the background `bg` (an index into [`BACKGROUNDS`](super::scene::BACKGROUNDS), or
/// `None` for plain grey).
fn background(img: &mut RgbImage, bg: Option<usize>, rng: &mut ChaCha8Rng) {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let phase: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    let period: f32 = rng.random_range(0.08..0.14) * w.min(h);
    let base_grey = rng.random_range(105..=150u8);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let (xf, yf) = (x as f32, y as f32);
        let t = yf / h;
        let n: i32 = rng.random_range(-12..=12);
        let c = match bg {
            None => [base_grey; 3],
            Some(0) => mix([70, 130, 220], [210, 230, 250], t), // sky
            Some(1) => {
                let blade = ((xf * 1.7 + phase).sin() * 0.5 + 0.5) * 40.0;
                [40, (120.0 + blade) as u8, 35] // grass
            }
            Some(2) => {
                let wave =
                    ((yf / period * 2.0 + (xf / period).sin() * 1.5 + phase).sin() + 1.0) * 0.5;
                mix([20, 70, 150], [60, 140, 200], wave) // water
            }
            Some(3) => [215, 190, 135], // sand
            Some(4) => [235, 238, 245], // snow
            Some(5) => {
                if rng.random_bool(0.012) {
                    [250, 250, 220] // a star
                } else {
                    [12, 14, 40] // night
                }
            }
            Some(6) => {
                let grain =
                    ((xf / period * 3.0 + (yf / period).sin() * 2.0 + phase).sin() + 1.0) * 0.5;
                mix([110, 65, 30], [160, 105, 55], grain) // wood
            }
            Some(7) => {
                let bh = period * 0.9;
                let row = (yf / bh).floor();
                let offset = if row as i64 % 2 == 0 { 0.0 } else { period };
                let in_mortar = (yf % bh) < 1.6 || ((xf + offset) % (period * 2.0)) < 1.6;
                if in_mortar {
                    [190, 185, 175]
                } else {
                    [150, 60, 45] // brick
                }
            }
            Some(8) => mix([250, 150, 60], [110, 50, 120], t), // sunset
            _ => {
                let on_line = (xf % period) < 1.2 || (yf % period) < 1.2;
                if on_line {
                    [60, 60, 60]
                } else {
                    [232, 232, 232] // grid
                }
            }
        };
        *p = Rgb(c.map(|v| (v as i32 + n).clamp(0, 255) as u8));
    }
}

/// Where an object goes: centre and radius in pixels, rotation in radians.
struct Placement {
    cx: f32,
    cy: f32,
    radius: f32,
    angle: f32,
}

fn draw_object(img: &mut RgbImage, o: &Object, at: &Placement, rng: &mut ChaCha8Rng) {
    let colour = jitter(rng, COLOURS[o.colour].1, 14);
    // A contrasting second tone for patterns: dark for light colours, light for dark ones.
    let luma = 0.3 * colour[0] as f32 + 0.59 * colour[1] as f32 + 0.11 * colour[2] as f32;
    let second = if luma > 140.0 {
        scale(colour, 0.3)
    } else {
        mix(colour, [255, 255, 255], 0.75)
    };
    let stripe_angle = rng.random_range(0..4) as f32 * std::f32::consts::FRAC_PI_4;
    let (sin, cos) = at.angle.sin_cos();
    let (ssin, scos) = stripe_angle.sin_cos();
    let r = at.radius;
    let (w, h) = (img.width() as i64, img.height() as i64);
    let x0 = ((at.cx - r * 1.05).floor() as i64).max(0);
    let x1 = ((at.cx + r * 1.05).ceil() as i64).min(w - 1);
    let y0 = ((at.cy - r * 1.05).floor() as i64).max(0);
    let y1 = ((at.cy + r * 1.05).ceil() as i64).min(h - 1);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let dx = (x as f32 + 0.5 - at.cx) / r;
            let dy = (y as f32 + 0.5 - at.cy) / r;
            let u = cos * dx + sin * dy;
            let v = -sin * dx + cos * dy;
            if !inside(o.shape, u, v) {
                continue;
            }
            let c = match o.texture {
                None => colour,
                Some(0) => {
                    // striped: bands a quarter of the radius wide
                    let s = (u * scos + v * ssin) * 4.0;
                    if s.rem_euclid(2.0) < 1.0 {
                        colour
                    } else {
                        second
                    }
                }
                Some(1) => {
                    // dotted
                    let (a, b) = (
                        (u * 3.0).rem_euclid(1.0) - 0.5,
                        (v * 3.0).rem_euclid(1.0) - 0.5,
                    );
                    if a * a + b * b < 0.09 {
                        second
                    } else {
                        colour
                    }
                }
                Some(2) => {
                    // outlined: only a rim, the inside showing the background
                    if inside(o.shape, u / 0.68, v / 0.68) {
                        continue;
                    }
                    colour
                }
                _ => {
                    // checkered
                    let k = (u * 2.5).floor() as i64 + (v * 2.5).floor() as i64;
                    if k.rem_euclid(2) == 0 {
                        colour
                    } else {
                        second
                    }
                }
            };
            img.put_pixel(x as u32, y as u32, Rgb(c));
        }
    }
}

/// Places the scene's objects: one anywhere, a pair side by side, a crowd without overlaps.
fn place(objects: &[Object], w: f32, h: f32, rng: &mut ChaCha8Rng) -> Vec<Placement> {
    let side = w.min(h);
    let radius = |size: Size, rng: &mut ChaCha8Rng| {
        let (lo, hi) = size.diameter_range();
        rng.random_range(lo..hi) * side * 0.5
    };
    // Small tilts only: a square tilted by 45 degrees would be a diamond.
    let angle = |rng: &mut ChaCha8Rng| rng.random_range(-0.25f32..0.25);
    let within = |r: f32, lo: f32, hi: f32, rng: &mut ChaCha8Rng| {
        if hi - r > lo + r {
            rng.random_range(lo + r..hi - r)
        } else {
            (lo + hi) * 0.5
        }
    };
    match objects.len() {
        1 => {
            let r = radius(objects[0].size, rng);
            vec![Placement {
                cx: within(r, 0.0, w, rng),
                cy: within(r, 0.0, h, rng),
                radius: r,
                angle: angle(rng),
            }]
        }
        2 => {
            // Halves along the longer side.
            (0..2)
                .map(|i| {
                    let r = radius(Size::Medium, rng);
                    let i = i as f32;
                    let (cx, cy) = if w >= h {
                        (
                            within(r, i * w / 2.0, (i + 1.0) * w / 2.0, rng),
                            within(r, 0.0, h, rng),
                        )
                    } else {
                        (
                            within(r, 0.0, w, rng),
                            within(r, i * h / 2.0, (i + 1.0) * h / 2.0, rng),
                        )
                    };
                    Placement {
                        cx,
                        cy,
                        radius: r,
                        angle: angle(rng),
                    }
                })
                .collect()
        }
        _ => {
            let mut out: Vec<Placement> = Vec::with_capacity(objects.len());
            for _ in objects {
                let r = radius(Size::Small, rng);
                let mut p = Placement {
                    cx: 0.0,
                    cy: 0.0,
                    radius: r,
                    angle: angle(rng),
                };
                for _ in 0..40 {
                    p.cx = within(r, 0.0, w, rng);
                    p.cy = within(r, 0.0, h, rng);
                    let free = out.iter().all(|q| {
                        (q.cx - p.cx).powi(2) + (q.cy - p.cy).powi(2) > (q.radius + r + 2.0).powi(2)
                    });
                    if free {
                        break;
                    }
                }
                out.push(p);
            }
            out
        }
    }
}

fn box_blur(img: &RgbImage, radius: i64) -> RgbImage {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let mut out = img.clone();
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0u32; 3];
            let mut n = 0u32;
            for yy in (y - radius).max(0)..=(y + radius).min(h - 1) {
                for xx in (x - radius).max(0)..=(x + radius).min(w - 1) {
                    let p = img.get_pixel(xx as u32, yy as u32).0;
                    for c in 0..3 {
                        acc[c] += p[c] as u32;
                    }
                    n += 1;
                }
            }
            out.put_pixel(x as u32, y as u32, Rgb(acc.map(|a| (a / n) as u8)));
        }
    }
    out
}

/// Draws `scene` on a `width`x`height` image.
pub(crate) fn render(scene: &Scene, width: u32, height: u32, rng: &mut ChaCha8Rng) -> RgbImage {
    let mut img = RgbImage::new(width, height);
    background(&mut img, scene.background, rng);
    let placements = place(&scene.objects, width as f32, height as f32, rng);
    for (o, p) in scene.objects.iter().zip(&placements) {
        draw_object(&mut img, o, p, rng);
    }
    let [framed, grainy, blurry, dark] = scene.effects;
    if framed {
        let t = ((width.min(height) as f32) * rng.random_range(0.06..0.09)).ceil() as u32;
        let c = if rng.random_bool(0.5) {
            [70, 70, 75]
        } else {
            [200, 200, 195]
        };
        for (x, y, p) in img.enumerate_pixels_mut() {
            if x < t || y < t || x + t >= width || y + t >= height {
                *p = Rgb(c);
            }
        }
    }
    if grainy {
        for p in img.pixels_mut() {
            let n: i32 = rng.random_range(-45..=45);
            p.0 = p.0.map(|v| (v as i32 + n).clamp(0, 255) as u8);
        }
    }
    if blurry {
        img = box_blur(&img, (width.min(height) / 40).max(2) as i64);
    }
    if dark {
        for p in img.pixels_mut() {
            p.0 = scale(p.0, 0.42);
        }
    }
    img
}
