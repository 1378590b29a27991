import Foundation
import Synchronization

/// The threads one process computes with: the calling thread plus `size − 1` workers.
///
/// EmbedTune does all of its own threading (OpenBLAS runs single-threaded inside each call): a
/// GEMM is split into row blocks, attention into (sequence, head) units, element-wise kernels into
/// row ranges, all on one team. With OpenBLAS's own threads the second core sat in
/// `sched_yield` whenever element-wise code ran on the first (≈ 22% of the embedding profile).
///
/// Workers spin briefly after each job (the next kernel usually follows within microseconds),
/// then sleep on a condition variable. Only one caller at a time owns the team; a concurrent or
/// nested caller runs its loop inline, so kernels are safe to call from any thread.
public final class ComputeTeam: @unchecked Sendable {
    /// The process's team, sized by `BLASRuntime.setThreads`.
    public static let shared = ComputeTeam()

    /// The team kernels called on this thread use: `shared`, unless `withTeam` chose another.
    /// (Scratch sized for one team must be used with that same team, so a test that wants two
    /// threads runs on its own team instead of resizing the one concurrent tests are using.)
    public static var current: ComputeTeam {
        guard let raw = pthread_getspecific(currentKey) else { return shared }
        return Unmanaged<ComputeTeam>.fromOpaque(raw).takeUnretainedValue()
    }

    /// Runs `body` with `team` as this thread's `current` team.
    public static func withTeam<T>(_ team: ComputeTeam, _ body: () throws -> T) rethrows -> T {
        let previous = pthread_getspecific(currentKey)
        pthread_setspecific(currentKey, Unmanaged.passUnretained(team).toOpaque())
        defer { pthread_setspecific(currentKey, previous) }
        return try body()
    }

    private static let currentKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// A team of `size` threads (the caller plus size − 1 workers).
    public convenience init(size: Int) {
        self.init()
        resize(size)
    }

    /// Threads taking part in a parallel loop, the caller included.
    public private(set) var size = 1

    private let generation = Atomic<Int>(0)
    private let remaining = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    private let stop = Atomic<Bool>(false)
    private var job: ((Int) -> Void)?
    private var mutex = pthread_mutex_t()
    private var wake = pthread_cond_t()
    private var workers = [pthread_t]()

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&wake, nil)
    }

    /// Sets the team size (≥ 1). Waits for a loop in progress on another thread to finish.
    public func resize(_ newSize: Int) {
        let target = max(1, newSize)
        while !busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged { sched_yield() }
        defer { busy.store(false, ordering: .releasing) }
        guard target != size else { return }
        stopWorkers()
        size = target
        for index in 1..<target { startWorker(index) }
    }

    /// Runs `body(worker)` once for each worker index 0..<size, each on its own thread (worker 0 is
    /// the caller), and returns when all have finished. A nested or concurrent caller, finding the
    /// team busy, runs every index itself, one after the other.
    public func run(_ body: (Int) -> Void) {
        guard size > 1, busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            for worker in 0..<size { body(worker) }
            return
        }
        withoutActuallyEscaping(body) { escapable in
            job = escapable
            remaining.store(size - 1, ordering: .relaxed)
            pthread_mutex_lock(&mutex)
            generation.add(1, ordering: .releasing)
            pthread_cond_broadcast(&wake)
            pthread_mutex_unlock(&mutex)
            escapable(0)
            var spins = 0
            while remaining.load(ordering: .acquiring) != 0 {
                spins += 1
                if spins > 4096 { sched_yield() }
            }
            job = nil
        }
        busy.store(false, ordering: .releasing)
    }

    /// Splits 0..<count into one contiguous chunk per thread (each a multiple of `grain`, except
    /// the last) and runs `body(chunk)` on the team. Small loops (< 2 grains) run inline.
    public func parallelFor(_ count: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
        let grains = (count + grain - 1) / grain
        if size == 1 || grains < 2 {
            if count > 0 { body(0..<count) }
            return
        }
        let threads = min(size, grains)
        run { worker in
            guard worker < threads else { return }
            let lower = min(count, (grains * worker / threads) * grain)
            let upper = min(count, (grains * (worker + 1) / threads) * grain)
            if lower < upper { body(lower..<upper) }
        }
    }

    /// Runs `body(item, worker)` for every item of 0..<count, handed out one at a time to whichever
    /// thread is free: for uneven units such as the attention of sequences of different lengths.
    public func parallelItems(_ count: Int, _ body: (_ item: Int, _ worker: Int) -> Void) {
        if size == 1 || count < 2 {
            for i in 0..<count { body(i, 0) }
            return
        }
        let next = Atomic<Int>(0)
        run { worker in
            while true {
                let i = next.add(1, ordering: .relaxed).oldValue
                if i >= count { return }
                body(i, worker)
            }
        }
    }

    // MARK: workers

    private final class Start {
        let team: ComputeTeam
        let index: Int
        let generation: Int
        init(_ team: ComputeTeam, _ index: Int, _ generation: Int) {
            self.team = team
            self.index = index
            self.generation = generation
        }
    }

    /// Starts worker `index`. The generation it waits past is read here, while no loop runs: a
    /// worker that read it itself, after the caller had already posted the first job, would
    /// wait for the next one forever.
    private func startWorker(_ index: Int) {
        let start = Start(self, index, generation.load(ordering: .acquiring))
        let context = Unmanaged.passRetained(start).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            start.team.workerLoop(start.index, seen: start.generation)
            return nil
        }, context)
        precondition(rc == 0, "pthread_create failed (\(rc))")
        workers.append(thread)
    }

    private func workerLoop(_ index: Int, seen initial: Int) {
        var seen = initial
        while true {
            var spins = 0
            while generation.load(ordering: .acquiring) == seen && !stop.load(ordering: .relaxed) {
                spins += 1
                if spins < 20_000 { continue }
                if spins < 22_000 { sched_yield(); continue }
                pthread_mutex_lock(&mutex)
                while generation.load(ordering: .acquiring) == seen && !stop.load(ordering: .relaxed) {
                    pthread_cond_wait(&wake, &mutex)
                }
                pthread_mutex_unlock(&mutex)
            }
            if stop.load(ordering: .relaxed) { return }
            seen = generation.load(ordering: .acquiring)
            job?(index)
            remaining.subtract(1, ordering: .releasing)
        }
    }

    private func stopWorkers() {
        guard !workers.isEmpty else { return }
        pthread_mutex_lock(&mutex)
        stop.store(true, ordering: .relaxed)
        pthread_cond_broadcast(&wake)
        pthread_mutex_unlock(&mutex)
        for t in workers { pthread_join(t, nil) }
        workers.removeAll()
        stop.store(false, ordering: .relaxed)
    }
}
