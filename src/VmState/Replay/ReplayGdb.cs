using System.Globalization;
using System.Net;
using System.Net.Sockets;
using VmState.Events;
using VmState.Linux;

namespace VmState.Replay;

/// <summary>
/// A breakpoint on a paused replay through QEMU's gdbstub (started on loopback with the replay), counting hits: at each
/// hit the instruction count is read over QMP (<c>query-replay</c>) while the stub holds the VM, the task on the vCPU
/// through the Linux layer (pid filter), and the vCPU is single-stepped over the breakpoint (a single-stepping vCPU
/// ignores breakpoints under TCG), so the replay executes exactly the recorded instructions. A replay-break at the end
/// of the range stops the run.
/// </summary>
internal sealed class ReplayGdb : IDisposable
{
    private static readonly TimeSpan s_reply = TimeSpan.FromSeconds(30);
    private readonly ReplayProbe _probe;
    private readonly GdbRemoteChannel _channel;

    private ReplayGdb(ReplayProbe probe, GdbRemoteChannel channel)
    {
        _probe = probe;
        _channel = channel;
    }

    /// <summary>Stops handled (hits of the breakpoint, filtered or not).</summary>
    public int Stops { get; private set; }

    public static int FreeLoopbackPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>The address of the kernel symbol <paramref name="symbol"/> in the paused replay.</summary>
    /// <exception cref="ArgumentException">No kernel can be read there, or it has no such symbol.</exception>
    public static async Task<ulong> ResolveAsync(ReplayProbe probe, string symbol, CancellationToken cancellationToken)
    {
        LinuxKernel kernel = await probe.KernelAsync(cancellationToken).ConfigureAwait(false)
            ?? throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"no guest kernel can be read at instruction {probe.At}: {probe.KernelError}"));
        return kernel.Symbols.TryGetAddress(symbol, out ulong address)
            ? address
            : throw new ArgumentException($"the guest kernel has no symbol {symbol}");
    }

    /// <summary>Connects to the replay's gdbstub (QEMU keeps the VM stopped while a client is attached and not continuing).</summary>
    public static ReplayGdb Connect(ReplayProbe probe)
    {
        int port = probe.Session.Info.GdbPort ?? throw new InvalidOperationException("the replay has no gdbstub");
        GdbRemoteChannel channel = GdbRemoteChannel.Connect("127.0.0.1", port, s_reply);
        try
        {
            channel.Request("qSupported:multiprocess-;xmlRegisters=i386", s_reply);
            channel.Request("qXfer:features:read:target.xml:0,ffb", s_reply);
            return new ReplayGdb(probe, channel);
        }
        catch
        {
            channel.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Runs the replay from where it is up to <paramref name="upTo"/> with a breakpoint at <paramref name="address"/>, and
    /// returns the instruction counts of the hits (by <paramref name="pid"/>, pid or tgid, when given), at most <paramref name="max"/>.
    /// </summary>
    public async Task<IReadOnlyList<ulong>> HitsAsync(ulong address, int? pid, ulong upTo, long max, CancellationToken cancellationToken)
    {
        var hits = new List<ulong>();
        if (upTo <= _probe.At)
        {
            return hits;
        }

        await ReplayQmp.BreakAsync(_probe.Live.Qmp, upTo, cancellationToken).ConfigureAwait(false);
        Expect(string.Create(CultureInfo.InvariantCulture, $"Z0,{address:x},1"));
        while (hits.Count < max && await NextHitAsync(address, pid, upTo, cancellationToken).ConfigureAwait(false) is (ulong icount, bool match))
        {
            if (match)
            {
                hits.Add(icount);
            }
        }

        Expect(string.Create(CultureInfo.InvariantCulture, $"z0,{address:x},1"));
        return hits;
    }

    /// <summary>
    /// The last hit before <paramref name="upTo"/> (by <paramref name="pid"/> when given) from where the replay is, in
    /// one forward run with few stops: a stop at the breakpoint costs QEMU 7.2 far more than the instructions between two
    /// (its gdbstub flushes every translated block at each debug stop, so the code after it is translated again), so once
    /// <see cref="RateHits"/> hits have told how often the breakpoint is hit, the run skips ahead with the breakpoint
    /// removed (<c>replay-break</c>) to where about <see cref="WindowHits"/> hits are expected before
    /// <paramref name="upTo"/>, and goes on with it from there (again if the hits come faster than that). A window with
    /// no hit leaves the answer in the part skipped last, which <see cref="ReplayScan"/> names for another replay.
    /// </summary>
    public async Task<ReplayScan> LastHitAsync(ulong address, int? pid, ulong upTo, CancellationToken cancellationToken)
    {
        ulong start = _probe.At;
        if (upTo <= start)
        {
            return new ReplayScan(start, null, null);
        }

        await ReplayQmp.BreakAsync(_probe.Live.Qmp, upTo, cancellationToken).ConfigureAwait(false);
        Expect(string.Create(CultureInfo.InvariantCulture, $"Z0,{address:x},1"));
        ulong? first = null;
        int seen = 0;
        ulong? last = null;
        ReplayGap? gap = null;
        while (await NextHitAsync(address, pid, upTo, cancellationToken).ConfigureAwait(false) is (ulong icount, bool match))
        {
            if (!match)
            {
                continue;
            }

            last = icount;
            first ??= icount;
            seen++;
            if (SkipTo(first.Value, icount, seen, upTo) is not ulong to)
            {
                continue;
            }

            Expect(string.Create(CultureInfo.InvariantCulture, $"z0,{address:x},1"));
            _atBreak = null;
            await ReplayQmp.BreakAsync(_probe.Live.Qmp, to, cancellationToken).ConfigureAwait(false);
            _channel.Send("c");
            await WaitForStopAsync(cancellationToken).ConfigureAwait(false);
            ulong at = await _probe.RefreshAsync(cancellationToken).ConfigureAwait(false);
            if (_probe.Session.Ended || at != to)
            {
                throw new IOException(string.Create(CultureInfo.InvariantCulture, $"the replay skipping ahead to instruction {to} stopped at {at}"));
            }

            Jumps++;
            gap = new ReplayGap(icount + 1, to, icount);
            (first, seen, last) = (null, 0, null);
            await ReplayQmp.BreakAsync(_probe.Live.Qmp, upTo, cancellationToken).ConfigureAwait(false);
            Expect(string.Create(CultureInfo.InvariantCulture, $"Z0,{address:x},1"));
        }

        Expect(string.Create(CultureInfo.InvariantCulture, $"z0,{address:x},1"));
        return new ReplayScan(start, last, last is null ? gap : null);
    }

    /// <summary>
    /// Where a run looking for the last hit before <paramref name="upTo"/> skips to after its <paramref name="seen"/>-th
    /// hit since the segment began, at <paramref name="icount"/> (the segment's first at <paramref name="first"/>), or
    /// null to go on with the breakpoint: the instructions per hit between the segment's first hit and this one (the
    /// run up to the first hit says nothing about how often it is hit) give a window of <see cref="WindowHits"/> hits
    /// before <paramref name="upTo"/>, and the run skips there when the rest would hold more than twice as many.
    /// </summary>
    internal static ulong? SkipTo(ulong first, ulong icount, int seen, ulong upTo)
    {
        if (seen < RateHits || icount <= first || upTo <= icount)
        {
            return null;
        }

        ulong window = (ulong)Math.Max(1, WindowHits * (double)(icount - first) / (seen - 1));
        return upTo - icount > 2 * window ? upTo - window : null;
    }

    /// <summary>Hits before <see cref="LastHitAsync"/> judges how often the breakpoint is hit.</summary>
    internal const int RateHits = 4;

    /// <summary>The hits <see cref="LastHitAsync"/> lets the window it skips to hold, at the rate seen.</summary>
    internal const int WindowHits = 8;

    /// <summary>Skips ahead <see cref="LastHitAsync"/> made.</summary>
    public int Jumps { get; private set; }

    /// <summary>The thread stopped at the breakpoint, to be stepped over before the run goes on; null: not at it.</summary>
    private int? _atBreak;

    /// <summary>
    /// Runs on (over the breakpoint first when stopped at it) to the next stop at the breakpoint before
    /// <paramref name="upTo"/>: its count and whether it is <paramref name="pid"/>'s; null when the run reached
    /// <paramref name="upTo"/> or the end.
    /// </summary>
    private async Task<(ulong Icount, bool Match)?> NextHitAsync(ulong address, int? pid, ulong upTo, CancellationToken cancellationToken)
    {
        if (_atBreak is int stepping)
        {
            _channel.Send(string.Create(CultureInfo.InvariantCulture, $"vCont;s:{Math.Max(1, stepping):x}"));
            await WaitForStopAsync(cancellationToken).ConfigureAwait(false);
            _atBreak = null;
        }

        while (true)
        {
            _channel.Send("c");
            int thread = await WaitForStopAsync(cancellationToken).ConfigureAwait(false);
            ulong icount = await _probe.RefreshAsync(cancellationToken).ConfigureAwait(false);
            if (icount >= upTo || _probe.Session.Ended)
            {
                return null;
            }

            string g = _channel.Request("g", s_reply);
            if (!X86GdbRegisters.TryParse(g, out X86GdbRegisters? regs) || regs!.Rip != address)
            {
                // Not our breakpoint (a pause by someone else): run on.
                continue;
            }

            Stops++;
            _atBreak = thread;
            return (icount, pid is not int wanted || await IsPidAsync(wanted, thread, regs, cancellationToken).ConfigureAwait(false));
        }
    }

    private async Task<bool> IsPidAsync(int wanted, int thread, X86GdbRegisters regs, CancellationToken cancellationToken)
    {
        _kernel ??= await _probe.KernelAsync(cancellationToken).ConfigureAwait(false);
        _kernel?.AddressSpace.Invalidate();
        try
        {
            _tasks ??= _kernel is null ? null : new CurrentTaskReader(_kernel);
            if (_tasks is not null)
            {
                (_, int p, int t, _) = _tasks.Read(Math.Max(0, thread - 1), regs);
                return p == wanted || t == wanted;
            }
        }
        catch (VmStateException)
        {
            // No current task to read yet (early boot): not the pid's.
        }

        return false;
    }

    private LinuxKernel? _kernel;
    private CurrentTaskReader? _tasks;

    /// <summary>Waits for the next stop reply; returns its thread (1 when it names none).</summary>
    private async Task<int> WaitForStopAsync(CancellationToken cancellationToken)
    {
        var pacer = new ReplayKickPacer();
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            TimeSpan wait = pacer.Delay;
            string? packet = await Task.Run(() => _channel.Receive(wait, cancellationToken), CancellationToken.None).ConfigureAwait(false);
            if (packet is not null && GdbStopReply.TryParse(packet, out GdbStopReply stop))
            {
                return stop.Thread ?? 1;
            }

            if (packet is null && _probe.Session.Ended)
            {
                return 1;
            }

            if (packet is null)
            {
                // Wakes QEMU's main loop, which replays an idle guest's time (ReplaySession.KickInterval).
                await _probe.Session.KickAsync(pacer, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private void Expect(string request)
    {
        string reply = _channel.Request(request, s_reply);
        if (reply != "OK")
        {
            throw new IOException($"QEMU's gdbstub answered \"{reply}\" to {request}");
        }
    }

    public void Dispose()
    {
        try
        {
            _channel.Detach(TimeSpan.FromSeconds(5));
        }
        catch (IOException)
        {
        }

        _channel.Dispose();
    }
}
