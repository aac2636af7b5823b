//! Generated image payloads: a PNG signature and header followed by
//! deterministic filler, distinct per index (so copies can be compared).

pub fn png(index: usize, len: usize) -> Vec<u8> {
    let mut data = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let mut x = (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while data.len() < len.max(16) {
        // xorshift: cheap, deterministic, different per image.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.push(x as u8);
    }
    data
}
