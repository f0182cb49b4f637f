//! What the model and convolution benches share.

use aia::model::TResNetVariant;

/// The TResNet that a bench times: `AIA_BENCH_MODEL` (`m`, `l`, `xl`, or timm's `tresnet_m`...),
/// TResNet-M without it.
pub fn variant() -> TResNetVariant {
    std::env::var("AIA_BENCH_MODEL").map_or(TResNetVariant::M, |name| {
        name.parse()
            .unwrap_or_else(|e| panic!("AIA_BENCH_MODEL={name}: {e}"))
    })
}

/// The batch that `AIA_BENCH_BATCH` asks a bench for, if any (a positive integer).
pub fn batch() -> Option<usize> {
    let value = std::env::var("AIA_BENCH_BATCH").ok()?;
    match value.parse() {
        Ok(n) if n > 0 => Some(n),
        _ => panic!("AIA_BENCH_BATCH={value}: not a positive integer"),
    }
}
