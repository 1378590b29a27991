import EmbedTuneKernels
import Foundation

/// A tensor's directory entry in a weights file: enough to allocate the fp32 tensor it reads as.
public protocol TensorFileEntry {
    /// PyTorch order (outermost first).
    var shape: [Int] { get }
}

/// A weights file whose tensors are looked up by name and read as fp32 (GGUFFile,
/// SafetensorsFile). Each format supplies the lookup and the conversion; the shape check and
/// allocation of `tensor(_:expectedShape:)` are shared.
public protocol TensorFile {
    associatedtype Entry: TensorFileEntry
    var url: URL { get }
    /// The named tensor's entry; a FormatError naming it missing when the file has none.
    func entry(_ name: String) throws -> Entry
    /// Converts the entry's elements to fp32 into `destination` (one float per element).
    func read(_ entry: Entry, into destination: UnsafeMutablePointer<Float>) throws
}

extension TensorFile {
    /// The tensor as fp32, in PyTorch-order shape, checked against `expectedShape` when given.
    public func tensor(_ name: String, expectedShape: [Int]? = nil) throws -> Tensor {
        let e = try entry(name)
        if let expectedShape, expectedShape != e.shape {
            throw FormatError(url: url, item: "tensor \"\(name)\"", "shape \(e.shape), expected \(expectedShape)")
        }
        let out = Tensor(zeros: e.shape)
        try read(e, into: out.pointer)
        return out
    }
}
