using VmState.Arch.X86;
using VmState.Machine;
using VmState.Memory;

namespace VmState.Live;

/// <summary>
/// A running QEMU VM attached through its QMP socket: guest RAM read from QEMU's own process memory
/// (gpa2hva + process_vm_readv), vCPU registers from "info registers -a", the memory map from "info mtree -f".
/// Pausing is scoped: <see cref="PauseAsync"/> returns a handle whose disposal resumes the guest if it was running.
/// </summary>
public sealed class LiveMachine : IAsyncDisposable
{
    private LiveMachine(QmpClient qmp, QemuProcessMemory memory, IReadOnlyList<HmpText.RamRegion> regions)
    {
        Qmp = qmp;
        Memory = memory;
        Regions = regions;
    }

    /// <summary>The QMP connection.</summary>
    public QmpClient Qmp { get; }

    /// <summary>Guest RAM through QEMU's process memory.</summary>
    public QemuProcessMemory Memory { get; }

    /// <summary>The RAM regions of the guest's memory map.</summary>
    public IReadOnlyList<HmpText.RamRegion> Regions { get; }

    /// <summary>Which memory path is in use, for messages.</summary>
    public string MemoryPath => $"QEMU process memory (pid {Memory.ProcessId}, gpa2hva + process_vm_readv)";

    /// <summary>Connects to QEMU's QMP socket and maps guest RAM.</summary>
    public static async Task<LiveMachine> AttachAsync(string qmpSocket, CancellationToken cancellationToken = default)
    {
        QmpClient qmp = await QmpClient.ConnectAsync(qmpSocket, TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false);
        try
        {
            int pid = qmp.PeerProcessId ?? throw new IOException($"cannot tell which process serves {qmpSocket} (SO_PEERCRED failed)");
            string mtree = await qmp.HumanMonitorCommandAsync("info mtree -f", null, cancellationToken).ConfigureAwait(false);
            IReadOnlyList<HmpText.RamRegion> regions = HmpText.ParseFlatViewRam(mtree);
            var mapped = new List<(MemoryRange, ulong)>();
            foreach (HmpText.RamRegion r in regions)
            {
                string answer = await qmp.HumanMonitorCommandAsync($"gpa2hva 0x{r.Start:x}", null, cancellationToken).ConfigureAwait(false);
                ulong hva = HmpText.ParseGpa2Hva(answer) ?? throw new IOException($"QEMU did not map guest-physical 0x{r.Start:x} ({r.Name}): {answer.Trim()}");
                mapped.Add((new MemoryRange(r.Start, r.Length, r.Name), hva));
            }

            mapped.Sort((a, b) => a.Item1.Start.CompareTo(b.Item1.Start));
            return new LiveMachine(qmp, new QemuProcessMemory(pid, mapped), regions);
        }
        catch
        {
            await qmp.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Every vCPU's registers, read now.</summary>
    public async Task<IReadOnlyList<X86CpuState>> ReadCpusAsync(CancellationToken cancellationToken = default) =>
        HmpText.ParseRegisters(await Qmp.HumanMonitorCommandAsync("info registers -a", null, cancellationToken).ConfigureAwait(false));

    /// <summary>A point-in-time <see cref="MachineState"/> view: live memory and the registers read now.</summary>
    public async Task<MachineState> ToMachineStateAsync(CancellationToken cancellationToken = default)
    {
        IReadOnlyList<X86CpuState> cpus = await ReadCpusAsync(cancellationToken).ConfigureAwait(false);
        var blocks = Regions.GroupBy(r => r.Name).Select(g => new RamBlockInfo(g.Key, g.Max(r => r.Offset + r.Length), g.Select(r => new BlockMapping(r.Start, r.Offset, r.Length)).ToList())).ToList();
        return new MachineState($"qmp:{Qmp.SocketPath}", $"running QEMU {Qmp.Version.Major}.{Qmp.Version.Minor}.{Qmp.Version.Micro}, {MemoryPath}", null, Memory, cpus, [], blocks, [], null);
    }

    /// <summary>Pauses the guest; disposing the handle resumes it if it was running (also on exceptions).</summary>
    public async Task<IAsyncDisposable> PauseAsync(CancellationToken cancellationToken = default)
    {
        bool wasRunning = await Qmp.QueryStatusAsync(cancellationToken).ConfigureAwait(false) == "running";
        if (wasRunning)
        {
            await Qmp.StopAsync(cancellationToken).ConfigureAwait(false);
        }

        return new Resumer(Qmp, wasRunning);
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync() => Qmp.DisposeAsync();

    private sealed class Resumer(QmpClient qmp, bool resume) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            if (resume)
            {
                await qmp.ContAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
    }
}
