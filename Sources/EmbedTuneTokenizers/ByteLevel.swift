/// GPT-2's reversible byte ↔ printable-character map: byte-level BPE vocabularies store tokens
/// as strings of these characters (e.g. "Ġ" is the space byte 0x20).
public enum ByteLevel {
    public static let byteToScalar: [Unicode.Scalar] = {
        var printable = Array(33...126) + Array(161...172) + Array(174...255)
        var scalars = [Int](repeating: -1, count: 256)
        for b in printable { scalars[b] = b }
        var next = 256
        for b in 0..<256 where scalars[b] < 0 {
            scalars[b] = next
            next += 1
            printable.append(b)
        }
        return scalars.map { Unicode.Scalar(UInt32($0))! }
    }()

    public static let scalarToByte: [UInt32: UInt8] = {
        var m = [UInt32: UInt8]()
        for (b, s) in byteToScalar.enumerated() { m[s.value] = UInt8(b) }
        return m
    }()

    /// "Ġhello" → [0x20, 0x68, …]; nil when a character is outside the map.
    public static func bytes(fromToken token: String) -> [UInt8]? {
        var out = [UInt8]()
        out.reserveCapacity(token.unicodeScalars.count)
        for s in token.unicodeScalars {
            guard let b = scalarToByte[s.value] else { return nil }
            out.append(b)
        }
        return out
    }

    public static func token(fromBytes bytes: [UInt8]) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(byteToScalar[Int(b)]) }
        return String(s)
    }
}
