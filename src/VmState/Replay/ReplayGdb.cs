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
        CurrentTaskReader? tasks = null;
        LinuxKernel? kernel = null;
        while (hits.Count < max)
        {
            _channel.Send("c");
            int thread = await WaitForStopAsync(cancellationToken).ConfigureAwait(false);
            ulong icount = await _probe.RefreshAsync(cancellationToken).ConfigureAwait(false);
            if (icount >= upTo || _probe.Session.Ended)
            {
                break;
            }

            string g = _channel.Request("g", s_reply);
            if (!X86GdbRegisters.TryParse(g, out X86GdbRegisters? regs) || regs!.Rip != address)
            {
                // Not our breakpoint (a pause by someone else): run on.
                continue;
            }

            Stops++;
            bool match = pid is null;
            if (pid is int wanted)
            {
                kernel ??= await _probe.KernelAsync(cancellationToken).ConfigureAwait(false);
                kernel?.AddressSpace.Invalidate();
                try
                {
                    tasks ??= kernel is null ? null : new CurrentTaskReader(kernel);
                    if (tasks is not null)
                    {
                        (_, int p, int t, _) = tasks.Read(Math.Max(0, thread - 1), regs);
                        match = p == wanted || t == wanted;
                    }
                }
                catch (VmStateException)
                {
                    // No current task to read yet (early boot): not the pid's.
                }
            }

            if (match)
            {
                hits.Add(icount);
                if (hits.Count >= max)
                {
                    break;
                }
            }

            _channel.Send(string.Create(CultureInfo.InvariantCulture, $"vCont;s:{Math.Max(1, thread):x}"));
            await WaitForStopAsync(cancellationToken).ConfigureAwait(false);
        }

        Expect(string.Create(CultureInfo.InvariantCulture, $"z0,{address:x},1"));
        return hits;
    }

    /// <summary>Waits for the next stop reply; returns its thread (1 when it names none).</summary>
    private async Task<int> WaitForStopAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            string? packet = await Task.Run(() => _channel.Receive(TimeSpan.FromSeconds(1), cancellationToken), CancellationToken.None).ConfigureAwait(false);
            if (packet is not null && GdbStopReply.TryParse(packet, out GdbStopReply stop))
            {
                return stop.Thread ?? 1;
            }

            if (packet is null && _probe.Session.Ended)
            {
                return 1;
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
