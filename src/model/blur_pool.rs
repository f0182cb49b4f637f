//! Anti-aliased downsampling: timm's `BlurPool2d` with a 3x3 binomial filter, as
//! [`kernels::blur_pool2d`](crate::kernels::blur_pool2d) computes it.

pub use crate::kernels::blur_pool2d;
