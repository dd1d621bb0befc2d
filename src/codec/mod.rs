//! codec (to be written).
