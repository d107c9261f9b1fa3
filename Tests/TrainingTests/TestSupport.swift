import Foundation
import XCTest

/// A fresh folder per test, removed afterwards.
class TemporaryDirectoryTestCase: XCTestCase {
    var directory = ""
    override func setUp() {
        directory = NSTemporaryDirectory() + "rlhf-\(type(of: self))-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }
}
