namespace VmState.Live;

/// <summary>
/// Which ways of reading a running VM's memory work from this process, and how to enable the others: the checks
/// of <c>vmstate doctor</c>. <see cref="LiveMachine"/> picks the fastest of these that works; this type only asks.
/// </summary>
public static class LiveAccessProbe
{
    /// <summary>The names of the checks that read guest RAM fast enough for the Linux views.</summary>
    private static readonly string[] s_memoryPaths = ["shared memory", "process memory"];

    /// <summary>
    /// Runs the checks over a connected QMP client, in this order: QMP itself, shared-memory backends, QEMU's
    /// process memory (gpa2hva + process_vm_readv; this attaches, reading the RAM layout), QEMU's gdbstub, and
    /// HMP <c>xp</c> through QMP. A check that fails is reported, not thrown.
    /// </summary>
    /// <exception cref="LiveVmGoneException">QEMU went away during the checks.</exception>
    public static async Task<IReadOnlyList<LiveAccessCheck>> CheckAsync(QmpClient client, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        var checks = new List<LiveAccessCheck>
        {
            new("QMP", true, $"QEMU {client.Version.Major}.{client.Version.Minor}.{client.Version.Micro} ({client.Package})", null),
        };
        (Dictionary<string, string> shared, List<string> notes) = await LiveMachine.FindSharedBackendsAsync(client, cancellationToken).ConfigureAwait(false);
        checks.Add(shared.Count > 0
            ? new LiveAccessCheck("shared memory", true, string.Join(", ", shared.Select(kv => $"{kv.Key} = {kv.Value}")), null)
            : new LiveAccessCheck("shared memory", false, string.Join("; ", notes), "start QEMU with -object memory-backend-file,id=pc.ram,size=SIZE,mem-path=/dev/shm/NAME,share=on -machine memory-backend=pc.ram"));

        int? pid = client.PeerProcessId;
        if (pid is null)
        {
            checks.Add(new LiveAccessCheck("process memory", false, "cannot tell QEMU's pid from the socket (SO_PEERCRED)", "run vmstate on the same host as QEMU"));
        }
        else
        {
            try
            {
                await using LiveMachine live = await LiveMachine.AttachAsync(client, ownsClient: false, cancellationToken).ConfigureAwait(false);
                checks.Add(new LiveAccessCheck("process memory", true, $"pid {pid}: {live.Memory.Ranges.Count} RAM ranges via gpa2hva + process_vm_readv", null));
            }
            catch (IOException e)
            {
                checks.Add(new LiveAccessCheck("process memory", false, e.Message, "run as root, or as QEMU's user with kernel.yama.ptrace_scope=0 (or grant CAP_SYS_PTRACE)"));
            }
        }

        (string Host, int Port)? gdb = pid is int p ? GdbstubMemory.FromCommandLine(p) : null;
        checks.Add(new LiveAccessCheck(
            "gdbstub",
            gdb is not null,
            gdb is (string h, int port) ? $"QEMU's gdbstub at {h}:{port} (used when neither process memory nor pmemsave works; stops the guest around each access, ~0.75 ms a read)" : "no gdbstub on QEMU's command line",
            gdb is null ? "add -gdb tcp:127.0.0.1:1234 (a gdbstub started later with HMP gdbserver is not seen)" : null));
        try
        {
            string xp = await client.HumanMonitorCommandAsync("xp /1xg 0x100000", null, cancellationToken).ConfigureAwait(false);
            checks.Add(new LiveAccessCheck("QMP xp", xp.Contains(':', StringComparison.Ordinal), xp.Trim(), null));
        }
        catch (QmpException e)
        {
            checks.Add(new LiveAccessCheck("QMP xp", false, e.Message, null));
        }

        return checks;
    }

    /// <summary>
    /// Measures each memory path <paramref name="live"/> can use — its shared mappings, QEMU's process memory
    /// (process_vm_readv) and QMP pmemsave — for about <paramref name="duration"/> in all (default one second, shared
    /// equally, half of each path's share for random 8-byte reads and half for 4 MiB sequential reads, both within the
    /// first 64 MiB of main RAM, read once beforehand so the steady state is measured, not first-touch page faults).
    /// QEMU's gdbstub is not measured: every access stops the guest. A path that fails while measured is left out.
    /// </summary>
    /// <exception cref="LiveVmGoneException">QEMU went away during the probe.</exception>
    public static async Task<IReadOnlyList<LivePathSpeed>> MeasureAsync(LiveMachine live, TimeSpan? duration = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(live);
        var paths = new List<(string Name, Memory.IPhysicalMemory Memory, Memory.MemoryRange Range)>();
        Memory.MemoryRange main = live.Memory.Ranges.MaxBy(r => r.Length);
        if (live.Memory.SharedBytes > 0)
        {
            Memory.MemoryRange shared = live.Memory.Ranges.Where(r => live.Memory.TryGetSpan(r.Start, 1, out _)).MaxBy(r => r.Length);
            paths.Add(("shared memory", live.Memory, shared));
        }

        if (live.Memory.Fallback is null)
        {
            paths.Add(("process memory", live.Memory.Process, main));
        }

        paths.Add(("QMP", new QmpMemory(live.Qmp, live.Memory.Ranges), main));
        TimeSpan each = (duration ?? TimeSpan.FromSeconds(1)) / paths.Count / 2;
        var results = new List<LivePathSpeed>();
        foreach ((string name, Memory.IPhysicalMemory memory, Memory.MemoryRange range) in paths)
        {
            cancellationToken.ThrowIfCancellationRequested();
            try
            {
                // The reads block (QMP's too: QmpMemory waits for QEMU), so they run off the caller's thread.
                results.Add(await Task.Run(() => Measure(name, memory, range, each, cancellationToken), cancellationToken).ConfigureAwait(false));
            }
            catch (Exception e) when (e is IOException or QmpException or TimeoutException or UnauthorizedAccessException)
            {
            }
        }

        return results;
    }

    // Optimised at once: a probe of a second would otherwise time tier-0 code for part of it.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static LivePathSpeed Measure(string name, Memory.IPhysicalMemory memory, Memory.MemoryRange range, TimeSpan budget, CancellationToken cancellationToken)
    {
        // A 64 MiB window read once before it is timed: the steady state a tool that keeps reading sees, not the first
        // touch of each page (a fresh shared mapping faults each page in, ~3 µs).
        const int Chunk = 4 << 20;
        ulong window = Math.Min(range.Length, 64UL << 20);
        byte[] buffer = GC.AllocateUninitializedArray<byte>(Chunk);
        for (ulong o = 0; o < window; o += Chunk)
        {
            memory.Read(range.Start + o, buffer.AsSpan(0, (int)Math.Min(Chunk, window - o)));
        }

        var rng = new Random(19);
        ulong[] addresses = new ulong[4096];
        for (int i = 0; i < addresses.Length; i++)
        {
            addresses[i] = range.Start + ((ulong)rng.NextInt64(0, (long)window - 8) & ~7UL);
        }

        Span<byte> b8 = stackalloc byte[8];
        long reads = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (clock.Elapsed < budget || reads == 0)
        {
            // 64 reads between clock checks: the clock costs as much as a shared-memory read.
            for (int i = 0; i < 64; i++)
            {
                ulong address = addresses[(int)((reads + i) & (addresses.Length - 1))];
                if (memory.Read(address, b8) != 8)
                {
                    throw new IOException($"{name}: a read of guest-physical 0x{address:x} came back short");
                }
            }

            reads += 64;
            cancellationToken.ThrowIfCancellationRequested();
        }

        TimeSpan latency = clock.Elapsed / reads;
        long bulk = 0;
        ulong offset = 0;
        clock.Restart();
        while (clock.Elapsed < budget || bulk == 0)
        {
            if (offset >= window)
            {
                offset = 0;
            }

            bulk += memory.Read(range.Start + offset, buffer.AsSpan(0, (int)Math.Min(Chunk, window - offset)));
            offset += Chunk;
            cancellationToken.ThrowIfCancellationRequested();
        }

        return new LivePathSpeed(name, latency, bulk / clock.Elapsed.TotalSeconds, reads, bulk);
    }

    /// <summary>True when one of <paramref name="checks"/> that reads guest RAM fast (shared or process memory) works.</summary>
    public static bool CanReadMemory(IEnumerable<LiveAccessCheck> checks)
    {
        ArgumentNullException.ThrowIfNull(checks);
        return checks.Any(c => c.Works && s_memoryPaths.Contains(c.Path));
    }
}
