import Cluster
import XCTest

/// Without mpirun the process is an MPI singleton: a world of one where collectives still work.
final class MPIWorldTests: XCTestCase {
    func testSingletonWorldAndAllReduce() {
        let world = MPIWorld.initialize()
        XCTAssertEqual(world.rank, 0)
        XCTAssertEqual(world.size, 1)
        XCTAssertTrue(MPIWorld.initialize() == world, "initialising again is harmless")
        var values: [Float] = [1, 2.5, -3]
        MPIWorld.allReduceSum(&values)
        XCTAssertEqual(values, [1, 2.5, -3])
        XCTAssertTrue(MPIWorld.libraryVersion.contains("MPI"), MPIWorld.libraryVersion)
    }
}
