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

    /// <summary>True when one of <paramref name="checks"/> that reads guest RAM fast (shared or process memory) works.</summary>
    public static bool CanReadMemory(IEnumerable<LiveAccessCheck> checks)
    {
        ArgumentNullException.ThrowIfNull(checks);
        return checks.Any(c => c.Works && s_memoryPaths.Contains(c.Path));
    }
}
