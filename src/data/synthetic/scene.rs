//! What a synthetic image shows: its objects, background and effects, and the labels they imply.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Shapes, most frequent first.
pub(crate) const SHAPES: [&str; 10] = [
    "circle", "square", "triangle", "star", "ring", "cross", "diamond", "hexagon", "heart",
    "crescent",
];

/// Object colours (name, RGB), most frequent first.
pub(crate) const COLOURS: [(&str, [u8; 3]); 10] = [
    ("red", [215, 35, 35]),
    ("blue", [35, 70, 215]),
    ("yellow", [240, 215, 30]),
    ("green", [35, 165, 50]),
    ("white", [245, 245, 245]),
    ("black", [20, 20, 20]),
    ("orange", [245, 135, 20]),
    ("purple", [135, 45, 175]),
    ("cyan", [40, 205, 215]),
    ("pink", [245, 125, 190]),
];

/// Surface patterns of an object (plain is unlabelled), most frequent first.
pub(crate) const TEXTURES: [&str; 4] = ["striped", "dotted", "outlined", "checkered"];

/// Backgrounds (plain grey is unlabelled), most frequent first.
pub(crate) const BACKGROUNDS: [&str; 10] = [
    "sky", "grass", "water", "sand", "snow", "night", "wood", "brick", "sunset", "grid",
];

/// Whole-image effects with their probabilities.
pub(crate) const EFFECTS: [(&str, f64); 4] = [
    ("framed", 0.08),
    ("grainy", 0.06),
    ("blurry", 0.05),
    ("dark", 0.04),
];

/// Layout and size labels.
pub(crate) const LAYOUT: [&str; 4] = ["pair", "crowd", "small", "large"];

/// The whole vocabulary, in output-column order.
pub(crate) fn vocabulary() -> Vec<String> {
    SHAPES
        .iter()
        .copied()
        .chain(COLOURS.iter().map(|c| c.0))
        .chain(TEXTURES.iter().copied())
        .chain(BACKGROUNDS.iter().copied())
        .chain(LAYOUT.iter().copied())
        .chain(EFFECTS.iter().map(|e| e.0))
        .map(str::to_string)
        .collect()
}

/// Object size classes, relative to the image's shorter side (diameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Size {
    Small,
    Medium,
    Large,
}

impl Size {
    pub(crate) fn diameter_range(self) -> (f32, f32) {
        match self {
            Size::Small => (0.2, 0.27),
            Size::Medium => (0.38, 0.48),
            Size::Large => (0.66, 0.84),
        }
    }
}

/// One drawn object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Object {
    pub shape: usize,
    pub colour: usize,
    /// Index into [`TEXTURES`], or `None` for plain.
    pub texture: Option<usize>,
    pub size: Size,
}

/// A sampled scene.
#[derive(Debug, Clone)]
pub(crate) struct Scene {
    /// Index into [`BACKGROUNDS`], or `None` for plain grey.
    pub background: Option<usize>,
    pub objects: Vec<Object>,
    /// Whether [`EFFECTS`]`[i]` applies.
    pub effects: [bool; 4],
    /// The label indices (into [`vocabulary`]), sorted, 2 to 6 of them.
    pub labels: Vec<usize>,
}

/// A Zipf-like law over `n` ranks: weight of rank `r` (0-based) is `1 / (r + 1)^s`; gives the
/// long tail of the real sets (a few very common labels, many rare ones).
fn zipf(rng: &mut ChaCha8Rng, n: usize, s: f64) -> usize {
    let total: f64 = (1..=n).map(|r| (r as f64).powf(-s)).sum();
    let mut u = rng.random::<f64>() * total;
    for r in 0..n {
        u -= ((r + 1) as f64).powf(-s);
        if u <= 0.0 {
            return r;
        }
    }
    n - 1
}

const CIRCLE: usize = 0;
const RING: usize = 4;
const OUTLINED: usize = 2;

const SHAPE_BASE: usize = 0;
const COLOUR_BASE: usize = SHAPE_BASE + SHAPES.len();
const TEXTURE_BASE: usize = COLOUR_BASE + COLOURS.len();
const BACKGROUND_BASE: usize = TEXTURE_BASE + TEXTURES.len();
const LAYOUT_BASE: usize = BACKGROUND_BASE + BACKGROUNDS.len();
const EFFECT_BASE: usize = LAYOUT_BASE + LAYOUT.len();

impl Scene {
    /// Samples a scene. Every label is visible: a label is given exactly when the image shows it.
    pub(crate) fn sample(rng: &mut ChaCha8Rng) -> Scene {
        let background = if rng.random_bool(0.2) {
            None
        } else {
            Some(zipf(rng, BACKGROUNDS.len(), 1.1))
        };
        let layout = rng.random::<f64>();
        let objects = if layout < 0.62 {
            let size = match rng.random::<f64>() {
                x if x < 0.2 => Size::Small,
                x if x < 0.75 => Size::Medium,
                _ => Size::Large,
            };
            let shape = zipf(rng, SHAPES.len(), 1.2);
            let colour = zipf(rng, COLOURS.len(), 1.0);
            // Textures need room to be seen: none on small objects.
            let texture = (size != Size::Small && rng.random_bool(0.45)).then(|| {
                match zipf(rng, TEXTURES.len(), 0.9) {
                    // An outlined circle would look like a ring: stripe it instead.
                    OUTLINED if shape == CIRCLE || shape == RING => 0,
                    t => t,
                }
            });
            vec![Object {
                shape,
                colour,
                texture,
                size,
            }]
        } else if layout < 0.86 {
            (0..2)
                .map(|_| Object {
                    shape: zipf(rng, SHAPES.len(), 1.2),
                    colour: zipf(rng, COLOURS.len(), 1.0),
                    texture: None,
                    size: Size::Medium,
                })
                .collect()
        } else {
            let n = rng.random_range(3..=5);
            let shape = zipf(rng, SHAPES.len(), 1.2);
            let colour = zipf(rng, COLOURS.len(), 1.0);
            vec![
                Object {
                    shape,
                    colour,
                    texture: None,
                    size: Size::Small,
                };
                n
            ]
        };
        let mut labels = Vec::with_capacity(6);
        let add = |l: usize, labels: &mut Vec<usize>| {
            if !labels.contains(&l) {
                labels.push(l);
            }
        };
        for o in &objects {
            add(SHAPE_BASE + o.shape, &mut labels);
            add(COLOUR_BASE + o.colour, &mut labels);
            if let Some(t) = o.texture {
                add(TEXTURE_BASE + t, &mut labels);
            }
        }
        match objects.len() {
            1 if objects[0].size == Size::Small => add(LAYOUT_BASE + 2, &mut labels),
            1 if objects[0].size == Size::Large => add(LAYOUT_BASE + 3, &mut labels),
            1 => {}
            2 => add(LAYOUT_BASE, &mut labels),
            _ => {
                add(LAYOUT_BASE + 1, &mut labels);
                add(LAYOUT_BASE + 2, &mut labels);
            }
        }
        if let Some(b) = background {
            add(BACKGROUND_BASE + b, &mut labels);
        }
        let mut effects = [false; 4];
        for (i, &(_, p)) in EFFECTS.iter().enumerate() {
            // Drawn whatever the room, so the stream of draws does not depend on earlier labels;
            // applied (and labelled) only while the image has fewer than 6 labels.
            let wanted = rng.random_bool(p);
            if wanted && labels.len() < 6 {
                effects[i] = true;
                add(EFFECT_BASE + i, &mut labels);
            }
        }
        labels.sort_unstable();
        Scene {
            background,
            objects,
            effects,
            labels,
        }
    }
}
