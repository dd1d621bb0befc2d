//! Raw bytes into every parser a file reaches before the network: the chunk table
//! (`inspect`), the header and the STEP / LOSS payload parsers. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ddpmc::codec::inspect(data);
    let _ = ddpmc::format::Header::parse(data);
    let _ = ddpmc::format::StepChunk::parse(data);
    for major in [2, 3] {
        let _ = ddpmc::format::LossChunk::parse(data, major);
    }
});
