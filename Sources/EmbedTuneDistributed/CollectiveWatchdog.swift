import Foundation

/// Ends this process when one collective has waited longer than `timeout` seconds. A peer that
/// stops (SIGSTOP, a node that stops answering, a cut link) would otherwise hold every other rank
/// inside the collective forever; once one rank exits with a failure, mpirun ends the whole job.
/// The line it prints names the call, this rank and what the run was doing (the trainer's step).
/// Checkpoints are written complete or not at all, so the last one on disk stays intact.
final class CollectiveWatchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var call: (name: String, start: UInt64)?
    private var timeout: Double
    private var activity = ""
    private let rank: Int

    init(timeout: Double, rank: Int) {
        self.timeout = timeout
        self.rank = rank
        // The thread lives as long as the process: one communicator per process owns a watchdog.
        let thread = Thread { self.watch() }
        thread.name = "embedtune collective watchdog"
        thread.start()
    }

    func setTimeout(_ seconds: Double) { lock.withLock { timeout = seconds } }
    func setActivity(_ text: String) { lock.withLock { activity = text } }
    func begin(_ name: String) { lock.withLock { call = (name, DispatchTime.now().uptimeNanoseconds) } }
    func end() { lock.withLock { call = nil } }

    private func watch() {
        while true {
            let (limit, waited, name, doing) = lock.withLock { () -> (Double, Double, String, String) in
                let waited = call.map { Double(DispatchTime.now().uptimeNanoseconds - $0.start) / 1e9 } ?? 0
                return (timeout, waited, call?.name ?? "", activity)
            }
            if limit > 0 && waited > limit {
                let at = doing.isEmpty ? "" : " at \(doing)"
                let line = String(format: "embedtune: error: rank %d: %@ has waited %.0f s%@ (collective_timeout %.0f s): another rank stopped answering; ending the job, the last checkpoint is intact\n",
                                  rank, name, waited, at, limit)
                FileHandle.standardError.write(Data(line.utf8))
                fflush(nil)
                _exit(1)
            }
            // Checks a few times per timeout, at most once a second.
            Thread.sleep(forTimeInterval: limit > 0 ? min(1, max(0.05, limit / 10)) : 1)
        }
    }
}
