using System.Net.Sockets;
using VmState.Arch;
using VmState.Arch.Arm64;
using VmState.Arch.X86;
using VmState.Machine;
using VmState.Memory;

namespace VmState.Live;

/// <summary>
/// A running QEMU VM attached through its QMP socket: guest RAM read from QEMU's own process memory
/// (gpa2hva + process_vm_readv), vCPU registers from "info registers -a" (for an AArch64 guest with the system
/// registers from QEMU's gdbstub), the memory map from "info mtree -f".
/// Pausing is scoped: <see cref="PauseAsync"/> returns a handle whose disposal resumes the guest if it was running.
/// </summary>
public sealed class LiveMachine : IAsyncDisposable
{
    private readonly bool _ownsClient;

    private LiveMachine(QmpClient qmp, LiveMemory memory, IReadOnlyList<HmpText.RamRegion> regions, IReadOnlyList<string> notes, bool ownsClient, CpuArchitecture architecture)
    {
        _ownsClient = ownsClient;
        Architecture = architecture;
        Qmp = qmp;
        Memory = memory;
        Regions = regions;
        Notes = notes;
    }

    /// <summary>The QMP connection.</summary>
    public QmpClient Qmp { get; }

    /// <summary>The guest's CPU architecture (QMP query-target: "x86_64" or "aarch64").</summary>
    public CpuArchitecture Architecture { get; }

    /// <summary>Guest RAM: shared mappings where QEMU offers them, QEMU's process memory elsewhere.</summary>
    public LiveMemory Memory { get; }

    /// <summary>Why a faster path was not used, when it was not.</summary>
    public IReadOnlyList<string> Notes { get; }

    /// <summary>The RAM regions of the guest's memory map.</summary>
    public IReadOnlyList<HmpText.RamRegion> Regions { get; }

    /// <summary>Which memory path is in use, for messages.</summary>
    public string MemoryPath
    {
        get
        {
            string rest = Memory.Fallback is IPhysicalMemory f ? $"{f.Name} (no ptrace rights over QEMU)" : $"QEMU process memory (pid {Memory.ProcessId}, gpa2hva + process_vm_readv)";
            return Memory.SharedBytes == 0 ? rest : $"shared memory backend ({Memory.SharedBytes >> 20} MiB mapped) + {rest} for the rest";
        }
    }

    /// <summary>Connects to QEMU's QMP socket and maps guest RAM.</summary>
    public static async Task<LiveMachine> AttachAsync(string qmpSocket, CancellationToken cancellationToken = default)
    {
        QmpClient qmp = await QmpClient.ConnectAsync(qmpSocket, TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false);
        try
        {
            return await AttachAsync(qmp, ownsClient: true, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await qmp.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Maps guest RAM over an existing QMP connection (QEMU serves one client per QMP socket).</summary>
    public static async Task<LiveMachine> AttachAsync(QmpClient qmp, bool ownsClient, CancellationToken cancellationToken = default)
    {
        string qmpSocket = qmp.SocketPath;
        int pid = qmp.PeerProcessId ?? throw new IOException(qmp.LibvirtDomain is LibvirtDomainInfo domain
            ? $"the QEMU process of libvirt domain {domain.Name} is not on this host (or its command line cannot be read), so its memory cannot be read from here; run vmstate on the host that runs the domain"
            : $"cannot tell which process serves {qmpSocket} (SO_PEERCRED failed)");
        CpuArchitecture architecture = await QueryArchitectureAsync(qmp, cancellationToken).ConfigureAwait(false);
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
        (Dictionary<string, string> shared, List<string> notes) = await FindSharedBackendsAsync(qmp, cancellationToken).ConfigureAwait(false);
        if (qmp.LibvirtDomain is LibvirtDomainInfo d)
        {
            notes.Add($"libvirt domain {d.Name} (pid {pid}): QMP goes through libvirt's monitor passthrough, so libvirt marks the domain tainted (custom-monitor)");
        }

        var process = new QemuProcessMemory(pid, mapped);
        IPhysicalMemory? fallback = null;
        string? forced = Environment.GetEnvironmentVariable("VMSTATE_LIVE_PATH");
        try
        {
            if (forced is "qmp" or "gdbstub")
            {
                throw new IOException($"VMSTATE_LIVE_PATH={forced} asks for that path");
            }

            process.Read(mapped[0].Item1.Start, new byte[8]);
        }
        catch (IOException e)
        {
            // No ptrace rights over QEMU: QMP pmemsave (~0.6 ms a read, ~0.2 GB/s bulk), else QEMU's gdbstub if it has
            // one. The gdbstub is not preferred: QEMU drops a packet that arrives while the guest runs, so every access
            // stops and resumes the guest over QMP (~0.75 ms a read on a running guest, ~1 MB/s bulk).
            List<MemoryRange> ranges = mapped.Select(m => m.Item1).ToList();
            if (forced != "gdbstub")
            {
                var pmem = new QmpMemory(qmp, ranges);
                try
                {
                    pmem.Read(ranges[0].Start, new byte[8]);
                    notes.Add($"process memory unavailable ({e.Message}); reading through QMP pmemsave, about 0.6 ms a read");
                    fallback = pmem;
                }
                catch (Exception q) when (q is IOException or QmpException or LiveVmGoneException or UnauthorizedAccessException)
                {
                    notes.Add($"QMP pmemsave is not usable: {q.Message}");
                }
            }

            if (fallback is null && forced != "qmp" && GdbstubMemory.FromCommandLine(pid) is (string host, int port))
            {
                try
                {
                    fallback = new GdbstubMemory(qmp, host, port, ranges);
                    notes.Add($"process memory unavailable ({e.Message}); reading through QEMU's gdbstub at {host}:{port} (the guest is stopped around each access)");
                }
                catch (Exception g) when (g is IOException or SocketException or LiveVmGoneException)
                {
                    notes.Add($"QEMU's gdbstub at {host}:{port} is not usable: {g.Message}");
                }
            }

            if (fallback is null)
            {
                throw new IOException($"no memory path to the guest: process memory unavailable ({e.Message}); {string.Join("; ", notes)}", e);
            }
        }

        return new LiveMachine(qmp, new LiveMemory(process, regions, shared, fallback), regions, notes, ownsClient, architecture);
    }

    /// <summary>
    /// Memory backends with share=on whose file this process can open (query-memdev, qom-get mem-path), by
    /// RAMBlock name (the backend id); and why the others cannot be used.
    /// </summary>
    public static async Task<(Dictionary<string, string> Shared, List<string> Notes)> FindSharedBackendsAsync(QmpClient qmp, CancellationToken cancellationToken)
    {
        var shared = new Dictionary<string, string>(StringComparer.Ordinal);
        var notes = new List<string>();
        System.Text.Json.JsonElement memdevs = await qmp.ExecuteAsync("query-memdev", null, null, cancellationToken).ConfigureAwait(false);
        foreach (System.Text.Json.JsonElement d in memdevs.EnumerateArray())
        {
            string id = d.TryGetProperty("id", out System.Text.Json.JsonElement i) ? i.GetString() ?? "?" : "?";
            if (!d.TryGetProperty("share", out System.Text.Json.JsonElement share) || !share.GetBoolean())
            {
                notes.Add($"memory backend {id} is not shared (add share=on)");
                continue;
            }

            string? path = null;
            try
            {
                System.Text.Json.JsonElement p = await qmp.ExecuteAsync("qom-get", new System.Text.Json.Nodes.JsonObject { ["path"] = $"/objects/{id}", ["property"] = "mem-path" }, null, cancellationToken).ConfigureAwait(false);
                path = p.GetString();
            }
            catch (QmpException)
            {
                notes.Add($"memory backend {id} has no file (memfd); map it with a memory-backend-file on /dev/shm instead");
                continue;
            }

            if (path is null || !File.Exists(path))
            {
                notes.Add($"memory backend {id}: its file {path} cannot be seen from here");
                continue;
            }

            try
            {
                using FileStream probe = File.Open(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
                shared[id] = path;
            }
            catch (UnauthorizedAccessException)
            {
                notes.Add($"memory backend {id}: no permission to open {path} read-write");
            }
        }

        if (memdevs.GetArrayLength() == 0)
        {
            notes.Add("guest RAM is not on a memory backend; for the shared-memory path start QEMU with -object memory-backend-file,id=pc.ram,size=SIZE,mem-path=/dev/shm/NAME,share=on -machine memory-backend=pc.ram");
        }

        return (shared, notes);
    }

    /// <summary>Every vCPU's registers, read now (empty for an AArch64 guest: see <see cref="ReadArm64CpusAsync"/>).</summary>
    public async Task<IReadOnlyList<X86CpuState>> ReadCpusAsync(CancellationToken cancellationToken = default) =>
        Architecture != CpuArchitecture.X86_64 ? [] : HmpText.ParseRegisters(await Qmp.HumanMonitorCommandAsync("info registers -a", null, cancellationToken).ConfigureAwait(false));

    /// <summary>
    /// Every vCPU of an AArch64 guest, read now at one instant: the guest paused (if it was running) while HMP
    /// "info registers -a" gives the general and FP/SIMD registers and QEMU's gdbstub the system registers
    /// (<see cref="Arm64GdbstubRegisters"/>), then resumed. Empty for an x86 guest.
    /// </summary>
    /// <exception cref="IOException">QEMU's gdbstub is held by another client or cannot be used.</exception>
    public async Task<IReadOnlyList<Arm64CpuState>> ReadArm64CpusAsync(CancellationToken cancellationToken = default) =>
        (await ReadArm64CpusWithWarningAsync(cancellationToken).ConfigureAwait(false)).Cpus;

    // The vCPUs and the warning of Arm64GdbstubRegisters.ReadAsync (the VM's own stub listens beyond loopback), or null.
    private async Task<(IReadOnlyList<Arm64CpuState> Cpus, string? Warning)> ReadArm64CpusWithWarningAsync(CancellationToken cancellationToken)
    {
        if (Architecture != CpuArchitecture.Arm64)
        {
            return ([], null);
        }

        await using (await PauseAsync(cancellationToken).ConfigureAwait(false))
        {
            IReadOnlyList<Arm64CpuState> cpus = HmpText.ParseArm64Registers(await Qmp.HumanMonitorCommandAsync("info registers -a", null, cancellationToken).ConfigureAwait(false));
            string? warning = await Arm64GdbstubRegisters.ReadAsync(Qmp, cpus, cancellationToken).ConfigureAwait(false);
            return (cpus, warning);
        }
    }

    private static async Task<CpuArchitecture> QueryArchitectureAsync(QmpClient qmp, CancellationToken cancellationToken)
    {
        // QMP query-target (QEMU 7.2 qapi/machine-target.json): {"arch": "x86_64" | "aarch64" | ...}.
        System.Text.Json.JsonElement target = await qmp.ExecuteAsync("query-target", null, null, cancellationToken).ConfigureAwait(false);
        string? arch = target.TryGetProperty("arch", out System.Text.Json.JsonElement a) ? a.GetString() : null;
        return arch switch
        {
            "aarch64" => CpuArchitecture.Arm64,
            "x86_64" or "i386" or null => CpuArchitecture.X86_64,
            _ => throw new NotSupportedException($"the VM runs QEMU's {arch} target; VmState reads x86_64 and aarch64 guests"),
        };
    }

    /// <summary>A point-in-time <see cref="MachineState"/> view: live memory and the registers read now.</summary>
    public async Task<MachineState> ToMachineStateAsync(CancellationToken cancellationToken = default)
    {
        IReadOnlyList<X86CpuState> cpus = await ReadCpusAsync(cancellationToken).ConfigureAwait(false);
        IReadOnlyList<Arm64CpuState> arm64Cpus;
        var warnings = new List<string>();
        try
        {
            (arm64Cpus, string? stubWarning) = await ReadArm64CpusWithWarningAsync(cancellationToken).ConfigureAwait(false);
            if (stubWarning is not null)
            {
                warnings.Add(stubWarning);
            }
        }
        catch (IOException e)
        {
            // The general registers still come from HMP; what needs TTBR/TCR (translation, the Linux views) says so.
            arm64Cpus = HmpText.ParseArm64Registers(await Qmp.HumanMonitorCommandAsync("info registers -a", null, cancellationToken).ConfigureAwait(false));
            warnings.Add($"the AArch64 system registers (TTBR0_EL1, TTBR1_EL1, TCR_EL1, SP_EL0) could not be read: {e.Message}");
        }

        var blocks = Regions.GroupBy(r => r.Name).Select(g => new RamBlockInfo(g.Key, g.Max(r => r.Offset + r.Length), g.Select(r => new BlockMapping(r.Start, r.Offset, r.Length)).ToList())).ToList();
        string? machineType = null;
        try
        {
            // The machine object's QOM type is "<machine type>-machine", e.g. "pc-i440fx-7.2-machine".
            string? qomType = (await Qmp.ExecuteAsync("qom-get", new System.Text.Json.Nodes.JsonObject { ["path"] = "/machine", ["property"] = "type" }, null, cancellationToken).ConfigureAwait(false)).GetString();
            machineType = qomType?.EndsWith("-machine", StringComparison.Ordinal) == true ? qomType[..^"-machine".Length] : qomType;
        }
        catch (QmpException)
        {
        }

        string description = $"running QEMU {Qmp.Version.Major}.{Qmp.Version.Minor}.{Qmp.Version.Micro}, {MemoryPath}";
        MachineOrigin origin = Qmp.LibvirtDomain is null
            ? new MachineOrigin(MachineOriginKind.LiveQemu, $"qmp:{Qmp.SocketPath}", description)
            : new LibvirtDomainOrigin(MachineOriginKind.LiveQemu, Qmp.SocketPath, description, await Task.Run(Qmp.LibvirtDomainXml, cancellationToken).ConfigureAwait(false) ?? string.Empty);
        return new MachineState(origin, machineType, Memory, cpus, [], blocks, warnings, null) { Arm64Cpus = arm64Cpus };
    }

    /// <summary>
    /// A consistent point-in-time state of the running VM, in one call: saved to <paramref name="file"/> with QEMU's
    /// background snapshot (the guest keeps running) and opened with every device and register, like any snapshot.
    /// </summary>
    public async Task<MachineState> SnapshotAsync(string file, CancellationToken cancellationToken = default)
    {
        // Which blocks are main RAM, and their NUMA order, is asked now: the saved file may not settle it. A memory
        // tree without pc/q35 main RAM leaves it to the file (which then says what it lacks).
        IReadOnlyList<string>? mainRam;
        try
        {
            mainRam = await ReadMainRamAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (FormatException)
        {
            mainRam = null;
        }

        await Qmp.SaveStateToFileAsync(file, background: true, cancellationToken).ConfigureAwait(false);
        return Snapshots.SnapshotLoader.Open(file, new Snapshots.SnapshotOpenOptions { MainRam = mainRam });
    }

    /// <summary>
    /// Captures a consistent point-in-time state of the running VM into this process: QEMU's background snapshot
    /// (the guest keeps running; paused instead where QEMU cannot) streamed through a pipe handed to QEMU over QMP to
    /// <paramref name="consumer"/> as a forward-only migration stream, never through a file. The guest is running again
    /// and no migration is active on every path (see <see cref="QemuMonitor.CaptureStateAsync"/>).
    /// </summary>
    /// <example>
    /// <code>
    /// SaveResult r = await live.CaptureAsync(async (stream, ct) =&gt; await stream.CopyToAsync(destination, ct));
    /// Console.WriteLine($"{r.Bytes} bytes, guest paused {r.GuestPause?.TotalMilliseconds} ms");
    /// </code>
    /// </example>
    public Task<SaveResult> CaptureAsync(Func<Stream, CancellationToken, Task> consumer, CancellationToken cancellationToken = default) =>
        Qmp.CaptureStateAsync(consumer, background: true, cancellationToken);

    /// <summary>
    /// The RAM blocks of the machine's main RAM in NUMA node order ("pc.ram", a <c>-machine memory-backend=</c> id,
    /// or the <c>-numa node,memdev=</c> ids), read from QEMU's memory tree: what
    /// <see cref="Snapshots.SnapshotOpenOptions.MainRam"/> needs to open a snapshot of this VM whose layout the file
    /// alone does not settle.
    /// </summary>
    /// <exception cref="FormatException">QEMU's memory tree has no pc/q35 main RAM.</exception>
    public async Task<IReadOnlyList<string>> ReadMainRamAsync(CancellationToken cancellationToken = default) =>
        HmpText.ParseMainRam(await Qmp.HumanMonitorCommandAsync("info mtree", null, cancellationToken).ConfigureAwait(false));

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
    public ValueTask DisposeAsync()
    {
        Memory.Dispose();
        return _ownsClient ? Qmp.DisposeAsync() : ValueTask.CompletedTask;
    }

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
