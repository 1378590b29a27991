import Foundation

// The project's one family of hashes and seeded generators: SplitMix64 for seeds, dropout row
// bases, data order and sampling; FNV-1a for text identity and checksums. Each is a pure function
// of its input, so every rank and every run derives the same values.

/// SplitMix64's finaliser: a 64-bit mix of a counter or a seed.
@inline(__always)
public func mix64(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// SplitMix64: a seeded generator whose whole state is one counter (checkpointable).
public struct SplitMix64: RandomNumberGenerator {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        defer { state &+= 0x9E37_79B9_7F4A_7C15 }
        return mix64(state)
    }
}

/// 64-bit FNV-1a of a string's UTF-8 (text identity for duplicate masking and splits).
public func fnv1a(_ s: String) -> UInt64 { fnv1a(bytes: s.utf8) }

/// 64-bit FNV-1a of raw bytes (checkpoint checksums).
public func fnv1a(_ data: Data) -> UInt64 { fnv1a(bytes: data) }

public func fnv1a<Bytes: Sequence>(bytes: Bytes) -> UInt64 where Bytes.Element == UInt8 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}
