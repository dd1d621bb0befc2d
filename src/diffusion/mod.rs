//! diffusion (to be written).
