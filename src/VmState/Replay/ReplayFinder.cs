using System.Diagnostics;
using System.Globalization;
using VmState.Live;

namespace VmState.Replay;

/// <summary>
/// Finds the exact instruction count where a predicate changes (<c>vmstate rr find</c>): the index says between which two
/// of its points (or, for predicates the index does not hold, one replay paused at each point does), then replays narrow
/// the interval down to one instruction. A replay only runs forward, and a replay seek backwards in QEMU restarts from
/// the initial snapshot anyway, so each narrowing round pauses one forward replay at <see cref="Fanout"/> evenly spaced
/// counts and the next round starts a fresh replay to the lower end of the sub-interval where the state changed: a
/// round costs one replay to that point plus the pauses, and the rounds are log(interval) / log(<see cref="Fanout"/>).
/// At the answer the predicate's state is the new one, at the answer minus one the old one. A change that is undone
/// between two index points is not seen (index with a smaller interval to see it).
/// </summary>
public sealed class ReplayFinder : IAsyncDisposable
{
    /// <summary>How many pauses one narrowing round makes when each round replays from power-on.</summary>
    public const int Fanout = 64;

    /// <summary>
    /// How many with checkpoints: a round's replay then costs about a second, and 16 pauses a round (log16 rounds)
    /// cost less in all than 64 (log64 rounds).
    /// </summary>
    public const int CheckpointFanout = 16;

    private const int MaxRetries = 4;

    /// <summary>A replay this far (instructions) before a checkpoint restarts from it rather than replaying there (about a second).</summary>
    private const ulong CheckpointGain = 200_000_000;
    private readonly ReplayRecording _recording;
    private readonly string _work;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private ReplayProbe? _probe;
    private int _replays;
    private int _stops;
    private readonly bool _useCheckpoints;
    private ReplayCheckpoints? _checkpoints;
    private int _retries;
    private int _loads;
    private ulong? _resolved;
    private int _jumps;

    private ReplayFinder(ReplayRecording recording, string workDirectory, bool useCheckpoints)
    {
        _recording = recording;
        _work = workDirectory;
        _useCheckpoints = useCheckpoints;
    }

    /// <summary>
    /// The first transition of <paramref name="predicate"/> (for a yes/no predicate: where it first becomes true), or with
    /// <paramref name="all"/> every transition, each exact to one instruction.
    /// </summary>
    /// <param name="recording">The recording.</param>
    /// <param name="index">Its index (<see cref="ReplayIndexer"/>).</param>
    /// <param name="predicate">What to look for.</param>
    /// <param name="all">Every transition, not just the first.</param>
    /// <param name="workDirectory">Where the replays keep their files (a subdirectory per replay).</param>
    /// <param name="cancellationToken">Cancels the search (the replay running is quit).</param>
    /// <param name="useCheckpoints">Load the recording's checkpoints (<see cref="ReplayCheckpoints"/>) when it has them; false: replay from power-on.</param>
    public static async Task<ReplayFindResult> FindAsync(ReplayRecording recording, ReplayIndex index, ReplayPredicate predicate, bool all, string workDirectory, CancellationToken cancellationToken = default, bool useCheckpoints = true)
    {
        ArgumentNullException.ThrowIfNull(recording);
        ArgumentNullException.ThrowIfNull(index);
        ArgumentNullException.ThrowIfNull(predicate);
        await using var finder = new ReplayFinder(recording, workDirectory, useCheckpoints);
        return await finder.RunAsync(index, predicate, all, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Quits the replay still running.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_probe is not null)
        {
            await _probe.DisposeAsync().ConfigureAwait(false);
            _probe = null;
        }
    }

    private async Task<ReplayFindResult> RunAsync(ReplayIndex index, ReplayPredicate predicate, bool all, CancellationToken ct)
    {
        var transitions = new List<ReplayTransition>();
        ulong? coarseFrom = null, coarseTo = null;
        string previous = predicate.AtPowerOn ?? await StateAtAsync(predicate, 0, ct).ConfigureAwait(false);
        ulong previousAt = 0;
        foreach (ReplayIndexPoint point in index.Points)
        {
            string state = predicate.FromIndex(point) ?? await StateAtAsync(predicate, point.Icount, ct).ConfigureAwait(false);
            if (state != previous)
            {
                // The state changed between two points: narrow down to the instruction, once or (all) for every change.
                ulong lo = previousAt;
                string loState = previous;
                while (loState != state)
                {
                    (ulong at, string after) = await NarrowAsync(predicate, lo, loState, point.Icount, state, ct).ConfigureAwait(false);
                    var t = new ReplayTransition(at, loState, after);
                    if (all || !predicate.IsBoolean || after == ReplayPredicate.True)
                    {
                        coarseFrom ??= previousAt;
                        coarseTo ??= point.Icount;
                        transitions.Add(t);
                        if (!all)
                        {
                            return Result(predicate, transitions, coarseFrom, coarseTo);
                        }
                    }

                    (lo, loState) = (at, after);
                }
            }

            (previous, previousAt) = (state, point.Icount);
        }

        return Result(predicate, transitions, coarseFrom, coarseTo);
    }

    private ReplayFindResult Result(ReplayPredicate predicate, List<ReplayTransition> transitions, ulong? from, ulong? to) =>
        new(predicate.Description, transitions, from, to, _replays, _stops, _clock.Elapsed) { CheckpointLoads = _loads, Skips = _jumps };

    /// <summary>
    /// Between <paramref name="lo"/> (state <paramref name="loState"/>) and <paramref name="hi"/> (another state): the
    /// first count after <paramref name="lo"/> whose state differs, and that state.
    /// </summary>
    private async Task<(ulong At, string State)> NarrowAsync(ReplayPredicate predicate, ulong lo, string loState, ulong hi, string hiState, CancellationToken ct)
    {
        while (hi - lo > 1)
        {
            ulong fanout = (ulong)(_checkpoints is null ? Fanout : CheckpointFanout);
            ulong step = Math.Max(1, (hi - lo + fanout - 1) / fanout);
            for (ulong q = lo + step; q < hi; q += step)
            {
                string s = await StateAtAsync(predicate, q, ct).ConfigureAwait(false);
                if (s != loState)
                {
                    (hi, hiState) = (q, s);
                    break;
                }

                lo = q;
            }

        }

        return (hi, hiState);
    }

    /// <summary>The predicate's state at <paramref name="icount"/>: the replay runs on to it, or a fresh replay starts when it is past.</summary>
    private async Task<string> StateAtAsync(ReplayPredicate predicate, ulong icount, CancellationToken ct)
    {
        ReplayProbe probe = await ProbeAtAsync(icount, gdb: false, ct).ConfigureAwait(false);
        _stops++;
        return await predicate.EvaluateAsync(probe, ct).ConfigureAwait(false);
    }

    private async Task<ReplayProbe> ProbeAtAsync(ulong icount, bool gdb, CancellationToken ct)
    {
        if (_useCheckpoints && _checkpoints is null)
        {
            _checkpoints = await ReplayCheckpoints.TryOpenAsync(_recording, ct).ConfigureAwait(false);
        }

        // Going back (or far ahead, past a checkpoint) is a new replay from the nearest checkpoint: QEMU 7.2 loads one
        // only while it starts (ReplayCheckpoints).
        ulong checkpoint = _checkpoints?.NearestAtOrBefore(icount) ?? 0;
        bool jump = _probe is not null && checkpoint > _probe.At && checkpoint - _probe.At > CheckpointGain;
        if (_probe is null || _probe.At > icount || _probe.Session.Ended || jump || (gdb && _probe.Session.Info.GdbPort is null))
        {
            await DisposeAsync().ConfigureAwait(false);
            _replays++;
            // With checkpoints the replays (one after the other) share one copy of the images: each loads a
            // checkpoint as it starts, which brings the images back to that checkpoint's state.
            string dir = Path.Combine(_work, _checkpoints is null ? _replays.ToString(CultureInfo.InvariantCulture) : "replay");
            _probe = await ReplayProbe.StartAsync(_recording, dir, gdb ? ReplayGdb.FreeLoopbackPort() : null, ct, _checkpoints, checkpoint).ConfigureAwait(false);
            if (_checkpoints is not null && checkpoint > 0)
            {
                _loads++;
            }
        }

        bool reached;
        try
        {
            reached = await _probe.RunToAsync(icount, ct).ConfigureAwait(false);
        }
        catch (TimeoutException) when (_retries < MaxRetries)
        {
            // A stuck replay (see ReplaySession.StallTimeout): another try from the checkpoint (or power-on).
            _retries++;
            await DisposeAsync().ConfigureAwait(false);
            return await ProbeAtAsync(icount, gdb, ct).ConfigureAwait(false);
        }

        if (!reached)
        {
            throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture,
                $"the replay of {_recording.Directory} ended at instruction {_probe.At} before {icount} (the recording has {_recording.InstructionCount}); it diverged from the recording"));
        }

        return _probe;
    }

    /// <summary>
    /// The instruction counts where a breakpoint on the kernel function <paramref name="symbol"/> is hit (by
    /// <paramref name="pid"/> when given: its pid or tgid), read at each hit from QEMU (<c>query-replay</c>) while the
    /// gdbstub holds the replay at the breakpoint. With <paramref name="before"/>: the last hit before that count, in
    /// replays from the checkpoint before it that skip ahead with the breakpoint removed once the hits tell how often it
    /// is hit (<see cref="ReplayGdb.LastHitAsync"/>; usually one replay with a dozen stops), going further back only
    /// when a part holds no hit (<see cref="LastHitAsync"/>); else the
    /// <paramref name="hit"/>-th hit, counted from power-on, or with <paramref name="pid"/> from the last index point
    /// before that pid first exists (one replay with the breakpoint from there).
    /// </summary>
    /// <exception cref="ArgumentException">The pid never exists at an index point, or the symbol is unknown.</exception>
    public static async Task<ReplayFindResult> FindBreakAsync(ReplayRecording recording, ReplayIndex index, string symbol, int? pid, long hit, ulong? before, string workDirectory, CancellationToken cancellationToken = default, bool useCheckpoints = true)
    {
        ArgumentNullException.ThrowIfNull(recording);
        ArgumentNullException.ThrowIfNull(index);
        ArgumentNullException.ThrowIfNull(symbol);
        ArgumentOutOfRangeException.ThrowIfLessThan(hit, 1);
        await using var finder = new ReplayFinder(recording, workDirectory, useCheckpoints);
        string what = $"breakpoint on {symbol}{(pid is int p ? string.Create(CultureInfo.InvariantCulture, $" by pid {p}") : string.Empty)}";
        IReadOnlyList<ReplayIndexPoint> points = index.Points;
        if (before is ulong end)
        {
            what += string.Create(CultureInfo.InvariantCulture, $", last hit before instruction {end}");
            (ulong? last, ulong from) = await LastHitAsync(end, (lowest, hi) => finder.LastHitScanAsync(symbol, pid, points, lowest, hi, cancellationToken)).ConfigureAwait(false);
            return last is ulong found
                ? finder.Result(new ReplayPredicateText(what), [new ReplayTransition(found, "not hit", "hit")], from, end)
                : finder.Result(new ReplayPredicateText(what), [], null, null);
        }

        what += string.Create(CultureInfo.InvariantCulture, $", hit {hit}");
        ulong start = 0;
        if (pid is int wanted)
        {
            int first = -1;
            for (int i = 0; i < points.Count && first < 0; i++)
            {
                if (points[i].View.Processes.Any(x => x.Pid == wanted))
                {
                    first = i;
                }
            }

            start = first switch
            {
                < 0 => throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"pid {wanted} exists at no point of the index")),
                0 => 0,
                _ => points[first - 1].Icount,
            };
        }

        ulong kernel = FirstKernelPoint(points, start) ?? throw new ArgumentException("the index has no point where the guest kernel could be read: no symbol can be resolved");
        IReadOnlyList<ulong> all = await finder.BreakHitsAsync(symbol, pid, start, kernel, recording.InstructionCount, hit, cancellationToken).ConfigureAwait(false);
        return finder.Result(new ReplayPredicateText(what), all.Count >= hit ? [new ReplayTransition(all[(int)hit - 1], "not hit", "hit")] : [], start, null);
    }

    /// <summary>
    /// One replay looking for the last hit before <paramref name="hi"/>, from at least <paramref name="lowest"/>: it
    /// starts at the checkpoint at or before <see cref="ScanSpan"/> instructions below <paramref name="hi"/> (not below
    /// <paramref name="lowest"/>), so a search near a checkpoint does not start a replay for a handful of instructions.
    /// Where the symbol's address is not known yet and no kernel can be read where the run starts, the run goes on to
    /// the first index point with a kernel first, and that part becomes the scan's gap.
    /// </summary>
    private async Task<ReplayScan> LastHitScanAsync(string symbol, int? pid, IReadOnlyList<ReplayIndexPoint> points, ulong lowest, ulong hi, CancellationToken ct)
    {
        if (_useCheckpoints && _checkpoints is null)
        {
            _checkpoints = await ReplayCheckpoints.TryOpenAsync(_recording, ct).ConfigureAwait(false);
        }

        ulong wanted = hi - Math.Min(hi, ScanSpan);
        ulong start = Math.Max(lowest, _checkpoints?.NearestAtOrBefore(wanted) ?? 0);
        ReplayGap? skipped = null;
        if (_resolved is null && !points.Any(p => p.Icount <= start && p.View.KernelError is null))
        {
            ulong kernelAt = FirstKernelPoint(points, start) ?? throw new ArgumentException("the index has no point where the guest kernel could be read: no symbol can be resolved");
            if (kernelAt >= hi)
            {
                // The kernel is first read after the part searched: resolve the symbol in a replay of its own.
                ReplayProbe resolver = await ProbeAtAsync(kernelAt, gdb: false, ct).ConfigureAwait(false);
                _resolved = await ReplayGdb.ResolveAsync(resolver, symbol, ct).ConfigureAwait(false);
            }
            else if (kernelAt > start)
            {
                skipped = new ReplayGap(start, kernelAt, null);
            }
        }

        await DisposeAsync().ConfigureAwait(false);
        ReplayProbe probe = await ProbeAtAsync(skipped?.To ?? start, gdb: true, ct).ConfigureAwait(false);
        _resolved ??= await ReplayGdb.ResolveAsync(probe, symbol, ct).ConfigureAwait(false);
        ReplayScan scan;
        using (ReplayGdb gdb = ReplayGdb.Connect(probe))
        {
            scan = await gdb.LastHitAsync(_resolved.Value, pid, hi, ct).ConfigureAwait(false);
            _stops += gdb.Stops;
            _jumps += gdb.Jumps;
        }

        // The stub moved the replay outside the session's own run-to: it is not reused.
        await DisposeAsync().ConfigureAwait(false);
        return scan with { Start = start, Gap = scan.Gap ?? (scan.Last is null ? skipped : null) };
    }

    /// <summary>How far below the end of the part searched a scan for the last hit starts, at least (about 0.2 s of replay).</summary>
    internal const ulong ScanSpan = 50_000_000;

    /// <summary>
    /// The last hit before <paramref name="end"/>, by scans each of one replay (<paramref name="scan"/>(lowest, hi):
    /// the last hit in [lowest, hi), looked for from some start at or above lowest). A scan with no hit sends the search
    /// below its start, or into the part it skipped last, whose floor (the last hit seen before it) is then known to be
    /// a hit: the answer is that floor when nothing above it is hit. Returns the hit (null: none before
    /// <paramref name="end"/>) and where the scan that found it started.
    /// </summary>
    internal static async Task<(ulong? Last, ulong From)> LastHitAsync(ulong end, Func<ulong, ulong, Task<ReplayScan>> scan)
    {
        // The answer is below hi, and at or above floor when floor is a hit already seen.
        ulong hi = end;
        ulong? floor = null;
        while (true)
        {
            ulong lowest = floor is ulong f ? f + 1 : 0;
            if (hi <= lowest)
            {
                return (floor, floor ?? 0);
            }

            ReplayScan s = await scan(lowest, hi).ConfigureAwait(false);
            if (s.Last is ulong found)
            {
                return (found, s.Start);
            }

            if (s.Gap is ReplayGap gap && gap.To < hi && gap.To > s.Start)
            {
                (hi, floor) = (gap.To, gap.Floor ?? floor);
            }
            else if (s.Start < hi)
            {
                hi = s.Start;
            }
            else
            {
                throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture, $"a scan below {hi} started at {s.Start}"));
            }
        }
    }

    private static ulong? FirstKernelPoint(IReadOnlyList<ReplayIndexPoint> points, ulong from)
    {
        foreach (ReplayIndexPoint p in points)
        {
            if (p.Icount >= from && p.View.KernelError is null)
            {
                return p.Icount;
            }
        }

        return null;
    }

    /// <summary>
    /// The counts of the hits from <paramref name="from"/> up to <paramref name="upTo"/> (at most <paramref name="max"/>);
    /// the symbol is resolved in a replay paused at <paramref name="kernelAt"/> (the same replay when that is
    /// <paramref name="from"/>, else one before: a replay's addresses, KASLR's included, are the recording's).
    /// </summary>
    private async Task<IReadOnlyList<ulong>> BreakHitsAsync(string symbol, int? pid, ulong from, ulong kernelAt, ulong upTo, long max, CancellationToken ct)
    {
        ulong address = _resolved ?? 0;
        if (address == 0 && kernelAt != from)
        {
            ReplayProbe resolver = await ProbeAtAsync(kernelAt, gdb: false, ct).ConfigureAwait(false);
            address = await ReplayGdb.ResolveAsync(resolver, symbol, ct).ConfigureAwait(false);
        }

        await DisposeAsync().ConfigureAwait(false);
        ReplayProbe probe = await ProbeAtAsync(from, gdb: true, ct).ConfigureAwait(false);
        if (address == 0)
        {
            address = await ReplayGdb.ResolveAsync(probe, symbol, ct).ConfigureAwait(false);
        }

        _resolved = address;

        IReadOnlyList<ulong> hits;
        using (ReplayGdb gdb = ReplayGdb.Connect(probe))
        {
            hits = await gdb.HitsAsync(address, pid, upTo, max, ct).ConfigureAwait(false);
            _stops += gdb.Stops;
        }

        // The stub moved the replay outside the session's own run-to: it is not reused.
        await DisposeAsync().ConfigureAwait(false);
        return hits;
    }

    private sealed class ReplayPredicateText(string text) : ReplayPredicate
    {
        public override string Description => text;

        internal override Task<string> EvaluateAsync(ReplayProbe probe, CancellationToken cancellationToken) => throw new NotSupportedException();
    }
}
