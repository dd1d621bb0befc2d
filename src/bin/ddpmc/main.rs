//! The `ddpmc` command line: encode, decode, info, bench.

fn main() {}
