//! entropy (to be written).
