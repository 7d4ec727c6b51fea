using System.Globalization;
using System.Text.Json;
using VmState.Arch.X86;
using VmState.Integration.Harness;
using VmState.Linux;
using VmState.Machine;
using VmState.Snapshots;

namespace VmState.Integration;

/// <summary>
/// A paused fixture guest saved as a migration stream and as QEMU's own ELF dump. One boot per configuration of the
/// kernel matrix (a subclass each); every test of <see cref="LinuxTests{TGuest}"/> reads those two files.
/// </summary>
public abstract class LinuxGuest : IAsyncLifetime
{
    public string Dir { get; } = Directory.CreateTempSubdirectory("vmstate-linux-").FullName;

    public GroundTruth Truth { get; private set; } = null!;

    /// <summary>The fixture (kernel, initramfs, guest binaries, System.map) this guest boots.</summary>
    public GuestFixture Fixture => GuestFixture.Ensure(Options.KernelSeries);

    protected abstract QemuGuestOptions Options { get; }

    public string Path(string kind) => System.IO.Path.Combine(Dir, kind == "mig" ? "guest.mig" : "guest.elf");

    /// <summary>The rest of a truth line with <paramref name="key"/>, e.g. "levels=5" for "paging".</summary>
    public string Line(string key) => Truth.Lines.First(l => l.Key == key).Text;

    public async Task InitializeAsync()
    {
        await using QemuGuest guest = await QemuGuest.StartAsync(Options);
        await guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
        Truth = guest.Truth;
        await guest.PauseAsync();
        await guest.DumpGuestMemoryAsync(Path("elf"));
        await guest.MigrateToFileAsync(Path("mig"));
        await guest.QuitAsync();
    }

    public Task DisposeAsync()
    {
        Directory.Delete(Dir, recursive: true);
        return Task.CompletedTask;
    }
}

public sealed class DefaultLinuxGuest : LinuxGuest
{
    protected override QemuGuestOptions Options => new();
}

/// <summary>-cpu max (5-level paging on) with page-table isolation.</summary>
public sealed class La57PtiLinuxGuest : LinuxGuest
{
    protected override QemuGuestOptions Options => new() { CpuModel = "max", ExtraKernelArgs = "pti=on" };
}

/// <summary>The Debian 12 6.12 kernel (linux-image-6.12-amd64), default machine.</summary>
public sealed class Linux612Guest : LinuxGuest
{
    protected override QemuGuestOptions Options => new() { KernelSeries = "6.12" };
}

public abstract class LinuxTests<TGuest>(TGuest guest)
    where TGuest : LinuxGuest
{
    public static TheoryData<string> Kinds() => new() { "mig", "elf" };

    private static ulong Hex(string s) => ulong.Parse(s.StartsWith("0x", StringComparison.Ordinal) ? s[2..] : s, NumberStyles.HexNumber, CultureInfo.InvariantCulture);

    private static Dictionary<string, string> Fields(string text) =>
        text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Where(p => p.Contains('=', StringComparison.Ordinal)).ToDictionary(p => p[..p.IndexOf('=', StringComparison.Ordinal)], p => p[(p.IndexOf('=', StringComparison.Ordinal) + 1)..]);

    /// <summary>
    /// Every process the guest printed is found; the only others allowed are what came and went after it printed:
    /// kernel threads (parent kthreadd, pid 2) and init's short-lived children (its tick loop runs sleep).
    /// </summary>
    private static void AssertSameProcesses(IEnumerable<int> printed, IEnumerable<(int Pid, int Ppid)> found)
    {
        var foundList = found.ToList();
        var missing = printed.Except(foundList.Select(f => f.Pid)).ToList();
        Assert.True(missing.Count == 0, $"processes the guest printed but the snapshot lacks: {string.Join(", ", missing)}");
        var printedSet = printed.ToHashSet();
        Assert.All(foundList.Where(f => !printedSet.Contains(f.Pid)), f => Assert.Contains(f.Ppid, new[] { 1, 2 }));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void TheKernelIsFoundTheSameWayByEveryRoute(string kind)
    {
        // The guest runs the kernel of its series (a fixture mix-up would make the matrix test one kernel twice).
        Assert.Equal(guest.Fixture.KernelVersion, guest.Truth.KernelVersion);
        Assert.StartsWith(guest.Fixture.Series + ".", guest.Truth.KernelVersion, StringComparison.Ordinal);
        using MachineState m = SnapshotLoader.Open(guest.Path(kind), new SnapshotOpenOptions { CacheReads = true });
        LinuxKernel k = KernelLocator.Locate(m);
        Assert.Equal(guest.Truth.KernelVersion, k.Release);
        Assert.Equal(guest.Line("banner"), k.Banner.TrimEnd('\n'));
        Assert.Equal(guest.Line("paging") == "levels=5" ? PagingMode.Level5 : PagingMode.Level4, k.Paging);
        ulong kernelCode = guest.Truth.Lines.Where(l => l.Key == "iomem" && l.Text.Contains("name=Kernel code", StringComparison.Ordinal)).Select(l => Hex(Fields(l.Text)["start"])).Single();
        Assert.Equal(kernelCode, k.TextPhysicalAddress);

        LinuxKernel byCr3 = KernelLocator.Locate(m, new KernelLocatorOptions { UseVmcoreinfo = false });
        Assert.Equal(KernelLocationMethod.ControlRegister, byCr3.Method);
        LinuxKernel byBanner = KernelLocator.Locate(m, new KernelLocatorOptions { UseVmcoreinfo = false, UseCpuState = false });
        Assert.Equal(KernelLocationMethod.Banner, byBanner.Method);
        foreach (LinuxKernel other in new[] { byCr3, byBanner })
        {
            Assert.Equal(k.TextAddress, other.TextAddress);
            Assert.Equal(k.PhysBase, other.PhysBase);
        }
    }

    /// <summary>
    /// Every task's state letter is the one /proc/PID/stat showed, but where the guest's printing moment and the
    /// snapshot's differ by nature: /init (pid 1) runs while it prints and sleeps in its tick loop at the snapshot,
    /// a kernel thread may be running ('R') at one of the two moments (a worker picking up a work item, ksoftirqd), and
    /// any task may be running at one moment and sleeping at the other (<see cref="GroundTruth.Process.AllowsLaterState"/>).
    /// </summary>
    private void AssertSameStates(IReadOnlyList<LinuxProcess> processes)
    {
        var differ = new List<string>();
        foreach (GroundTruth.Process want in guest.Truth.Processes)
        {
            LinuxProcess got = processes.Single(p => p.Pid == want.Pid);
            bool tolerated = want.Pid == 1 || (got.IsKernelThread && (want.State == 'R' || got.State == 'R')) || want.AllowsLaterState(got.State);
            if (want.State != got.State && !tolerated)
            {
                differ.Add($"pid {want.Pid} ({got.Name}): guest {want.State}, snapshot {got.State}");
            }
        }

        Assert.True(differ.Count == 0, string.Join("\n", differ));
    }

    /// <summary>
    /// Every task's name is the one /proc showed (stat's field 2; status's Name: is the same, escaped). A workqueue
    /// worker's "+wq"/"-wq" suffix names the workqueue of the work item it ran last, which can change (or appear, for a
    /// worker that had run nothing yet) between the guest's printing and the snapshot, and even between the guest's
    /// reads of status and stat: for those the worker id must match and the suffix be well formed, and at least one worker with a
    /// suffix must match exactly (so the suffix is shown to be read, not just tolerated).
    /// </summary>
    private void AssertSameNames(IReadOnlyList<LinuxProcess> processes)
    {
        var differ = new List<string>();
        int workersWithSuffix = 0;
        foreach (GroundTruth.Process want in guest.Truth.Processes)
        {
            LinuxProcess got = processes.Single(p => p.Pid == want.Pid);
            string stat = want.StatName ?? throw new Xunit.Sdk.XunitException($"the guest printed no procstat line for pid {want.Pid}");
            string status = want.StatusName ?? throw new Xunit.Sdk.XunitException($"the guest printed no procname line for pid {want.Pid}");
            (string wantBase, string? wantDesc) = WorkerName(stat);

            // The guest read status, then stat: a worker may have picked up a work item in between.
            if (!stat.Contains('\\', StringComparison.Ordinal) && !stat.Contains('\n', StringComparison.Ordinal) && !(wantDesc is not null && WorkerName(status).Base == wantBase))
            {
                Assert.Equal(stat, status);
            }

            (string gotBase, string? gotDesc) = WorkerName(got.Name);
            if (got.IsKernelThread && wantDesc is not null && got.Name == stat)
            {
                workersWithSuffix++;
            }

            bool tolerated = got.IsKernelThread && wantBase == gotBase && (wantDesc is not null || gotDesc is not null) && (gotDesc is null || gotDesc.Length > 1);
            if (got.Name != stat && !tolerated)
            {
                differ.Add($"pid {want.Pid}: guest '{stat}', snapshot '{got.Name}' (comm '{got.Comm}')");
            }
        }

        Assert.True(differ.Count == 0, string.Join("\n", differ));
        Assert.True(workersWithSuffix > 0, "no workqueue worker with a +/- workqueue suffix matched the guest's name exactly");
    }

    /// <summary>A kworker's name split into its id and "+desc"/"-desc" suffix (null when it has none); a rescuer (kworker/R-wq) has none.</summary>
    private static (string Base, string? Desc) WorkerName(string name)
    {
        if (!name.StartsWith("kworker/", StringComparison.Ordinal) || name.StartsWith("kworker/R-", StringComparison.Ordinal))
        {
            return (name, null);
        }

        int i = name.IndexOfAny(['-', '+'], "kworker/".Length);
        return i < 0 ? (name, null) : (name[..i], name[i..]);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void SymbolsProcessesAndModulesMatchWhatTheGuestPrinted(string kind)
    {
        using MachineState m = SnapshotLoader.Open(guest.Path(kind), new SnapshotOpenOptions { CacheReads = true });
        LinuxKernel k = KernelLocator.Locate(m);
        foreach ((string _, string text) in guest.Truth.Lines.Where(l => l.Key == "ksym"))
        {
            Dictionary<string, string> f = Fields(text);
            KernelSymbol s = k.Symbols.Find(f["name"]) ?? throw new Xunit.Sdk.XunitException($"symbol {f["name"]} not found");
            Assert.Equal(Hex(f["addr"]), s.Address);
            Assert.Equal(f["type"][0], s.Type);
        }

        IReadOnlyList<LinuxModule> modules = ModuleList.Read(k);
        Assert.Equal(guest.Truth.Modules, modules.Select(x => x.Name));

        // /proc/modules' columns: the size sums the module's memory regions (core/init layouts up to 6.3, mem[] from 6.4).
        Assert.Equal(guest.Truth.Modules.Count, guest.Truth.ModuleDetails.Count);
        foreach (GroundTruth.ModuleInfo want in guest.Truth.ModuleDetails)
        {
            LinuxModule got = modules.Single(x => x.Name == want.Name);
            Assert.Equal((want.Name, want.Size, want.References, want.Base), (got.Name, got.Size, got.References, got.Base));
            Assert.Equal(want.State, got.State, ignoreCase: true);
        }
        Assert.Equal(guest.Truth.KallsymsCount, k.Symbols.Count + modules.Sum(x => ModuleList.Symbols(k, x).Count));

        IReadOnlyList<LinuxProcess> processes = ProcessList.Read(k);
        AssertSameProcesses(guest.Truth.Processes.Select(p => p.Pid), processes.Select(p => (p.Pid, p.Ppid)));
        foreach (GroundTruth.Process want in guest.Truth.Processes)
        {
            LinuxProcess got = processes.Single(p => p.Pid == want.Pid);
            Assert.Equal(want.Ppid, got.Ppid);
            Assert.Equal((uint)want.Uid, got.Uid);
            Assert.Equal((uint)want.Gid, got.Gid);
            Assert.Equal(want.Comm, got.Comm);
            Assert.Equal(want.Threads, got.Threads);

            // /proc/PID/stat's starttime is start_boottime in USER_HZ (100) ticks: nanoseconds / 10^7, truncated.
            Assert.Equal(want.StartTicks, (long)(got.StartTimeNs / 10_000_000));
        }

        // The long-lived processes /init started sleep between their ticks (kernel threads and init itself may have
        // moved on since printing).
        Assert.All(guest.Truth.Processes.Where(p => p.Comm.StartsWith("vms", StringComparison.Ordinal)), want =>
        {
            char got = processes.Single(p => p.Pid == want.Pid).State;
            Assert.True(want.AllowsLaterState(got), $"pid {want.Pid} ({want.Comm}): printed state {want.State}, snapshot {got}");
        });
        AssertSameStates(processes);
        AssertSameNames(processes);

        IReadOnlyList<LinuxNetDevice> nics = NetDeviceList.Read(k);
        foreach (GroundTruth.Nic nic in guest.Truth.Nics)
        {
            LinuxNetDevice got = nics.Single(n => n.Name == nic.Name);
            Assert.Equal((nic.Mac, (uint)nic.Mtu, nic.Flags), (got.Mac, got.Mtu, (uint?)got.Flags));
        }

        KernelSummary summary = KernelSummary.Read(k);
        Assert.Equal(guest.Line("hostname"), summary.Hostname);
        Assert.Equal(guest.Line("cmdline"), summary.CommandLine);
        Assert.Equal(int.Parse(Fields(guest.Line("cpus"))["count"], CultureInfo.InvariantCulture), summary.Cpus.Count);
    }

    [Fact]
    public void KallsymsInGuestMemoryAreTheKernelsOwnSystemMap()
    {
        // The real System.map of this kernel (from its -dbg package), at link-time addresses.
        var map = new List<(string Name, ulong Address, char Type)>();
        foreach (string line in File.ReadLines(guest.Fixture.SystemMap))
        {
            string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            map.Add((f[2], Hex(f[0]), f[1][0]));
        }

        using MachineState m = SnapshotLoader.Open(guest.Path("mig"), new SnapshotOpenOptions { CacheReads = true });
        LinuxKernel k = KernelLocator.Locate(m);
        Assert.Equal(map.Single(s => s.Name == "_text").Address + (ulong)k.KaslrOffset, k.TextAddress);

        // kallsyms holds every System.map symbol but the absolute ones (type A), moved by the KASLR offset; 6.1 also
        // leaves out its own tables (kallsyms_names, kallsyms_offsets, ...), which 6.4+ lists. Per-CPU symbols are
        // offsets into the per-CPU area: not moved, and typed A in kallsyms (absolute per-CPU encoding) where
        // System.map says d/D.
        var want = map.Where(s => s.Type != 'A' && (!s.Name.StartsWith("kallsyms_", StringComparison.Ordinal) || k.Symbols.Find(s.Name) is not null))
            .Select(s => s.Address < 0xffff800000000000UL ? (s.Name, s.Address, Type: 'A') : (s.Name, Address: s.Address + (ulong)k.KaslrOffset, s.Type))
            .Select(s => $"{s.Address:x16} {s.Type} {s.Name}").Order(StringComparer.Ordinal).ToList();
        var got = k.Symbols.Select(s => $"{s.Address:x16} {s.Type} {s.Name}").Order(StringComparer.Ordinal).ToList();
        var missing = want.Except(got, StringComparer.Ordinal).Take(10).ToList();
        var extra = got.Except(want, StringComparer.Ordinal).Take(10).ToList();
        Assert.True(missing.Count == 0 && extra.Count == 0, $"System.map but not kallsyms: {string.Join("; ", missing)}\nkallsyms but not System.map: {string.Join("; ", extra)}");
        Assert.Equal(want, got);

        // The same map given to the CLI replaces kallsyms, relocated by the same offset.
        (int code, string stdout, string stderr) = VmStateCli.Run(["kernel-info", guest.Path("mig"), "--system-map", guest.Fixture.SystemMap]);
        Assert.True(code == 0, stderr);
        Assert.Contains($"symbols: {map.Count} from {guest.Fixture.SystemMap} (moved by the KASLR offset 0x{k.KaslrOffset:x}; linux_banner checked)", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void TheMarkerIsReadThroughTheMarkerProcesssOwnPageTables()
    {
        using MachineState m = SnapshotLoader.Open(guest.Path("mig"), new SnapshotOpenOptions { CacheReads = true });
        LinuxKernel k = KernelLocator.Locate(m);
        GroundTruth.MarkerInfo marker = guest.Truth.Marker!;
        LinuxProcess p = ProcessList.Read(k).Single(x => x.Pid == marker.Pid);
        ulong pgd = k.ObjectAt(p.TaskAddress, "struct task_struct").Member("mm").Member("pgd").ToUInt64();
        AddressSpace space = k.ProcessAddressSpace(pgd);
        byte[] b = new byte[marker.Value.Length];
        Assert.Equal(b.Length, space.Read(marker.VirtualAddress, b));
        Assert.Equal(marker.Value, System.Text.Encoding.ASCII.GetString(b));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void DmesgHoldsTheLinesTheGuestLogged(string kind)
    {
        using MachineState m = SnapshotLoader.Open(guest.Path(kind), new SnapshotOpenOptions { CacheReads = true });
        LinuxKernel k = KernelLocator.Locate(m);
        IReadOnlyList<KernelLogRecord> log = KernelLog.Read(k);

        // The ring has not wrapped in this short boot: every record from seq 0 on, in order, with no gap.
        Assert.Equal(Enumerable.Range(0, log.Count).Select(i => (ulong)i), log.Select(r => r.Sequence));
        Assert.Equal(guest.Line("banner"), log[0].Text);
        // (Timestamps are each CPU's local clock and may step back between CPUs, as in the guest's own dmesg.)

        // /init wrote the marker to /dev/kmsg as "<5>MARKER": level 5 (notice), facility 1 (user), from pid 1.
        KernelLogRecord marker = Assert.Single(log, r => r.Text == guest.Truth.DmesgMarker);
        Assert.Equal(5, marker.Level);
        Assert.Equal(1, marker.Facility);
        Assert.Equal("T1", marker.Caller);
        Assert.Contains(log, r => r.Text == $"Command line: {guest.Line("cmdline")}");

        (int code, string stdout, string stderr) = VmStateCli.Run(["dmesg", guest.Path(kind)]);
        Assert.True(code == 0, stderr);
        Assert.Contains($"] {guest.Truth.DmesgMarker}\n", stdout, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void MapsOfTheMarkerAreWhatItsProcPidMapsSaid(string kind)
    {
        int pid = guest.Truth.Marker!.Pid;
        string prefix = $"pid={pid} ";
        var want = guest.Truth.Lines.Where(l => l.Key == "maps" && l.Text.StartsWith(prefix, StringComparison.Ordinal)).Select(l => l.Text[prefix.Length..].TrimEnd()).ToList();
        Assert.NotEmpty(want);

        (int code, string stdout, string stderr) = VmStateCli.Run(["maps", guest.Path(kind), pid.ToString(CultureInfo.InvariantCulture)]);
        Assert.True(code == 0, stderr);
        Assert.Equal(want, stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd()));

        // A kernel thread has no map: a clear error, not a crash.
        (code, _, stderr) = VmStateCli.Run(["maps", guest.Path(kind), "2"]);
        Assert.Equal(2, code);
        Assert.Contains("kernel thread", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void ProcdumpOfTheMarkerGivesGdbABacktraceThroughMainAndItsData()
    {
        GroundTruth.MarkerInfo marker = guest.Truth.Marker!;
        string core = System.IO.Path.Combine(guest.Dir, $"marker-{Guid.NewGuid():N}.core");
        (int code, string stdout, string stderr) = VmStateCli.Run(["procdump", guest.Path("mig"), marker.Pid.ToString(CultureInfo.InvariantCulture), "-o", core, "--json"]);
        Assert.True(code == 0, stderr);
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            Assert.Equal(marker.Pid, doc.RootElement.GetProperty("pid").GetInt32());
            Assert.Equal("vmsmarker", doc.RootElement.GetProperty("comm").GetString());

            // The marker's untouched 64 GiB PROT_NONE reservation is left out, as the kernel's own core dumps do.
            Assert.InRange(doc.RootElement.GetProperty("fileBytes").GetInt64(), 64 << 10, 64 << 20);
        }

        Assert.InRange(new FileInfo(core).Length, 64 << 10, 64 << 20);

        string binary = guest.Fixture.Values["MARKER_BIN"];
        (int gdbCode, string output) = GdbBatch.Run(string.Empty, $"file {binary}", $"core-file {core}", "bt", "print/x g_value", "x/s g_marker_buf", "info auxv", "x/4c g_page_map");
        Assert.True(gdbCode == 0, output);
        Assert.Matches(@"#\d+ +0x[0-9a-f]+ in main \(", output);
        Assert.Contains("= 0x1122334455667788", output, StringComparison.Ordinal);
        Assert.Contains($"\"{marker.Value}\"", output, StringComparison.Ordinal);
        Assert.Contains("AT_ENTRY", output, StringComparison.Ordinal);
        Assert.Contains("77 'M'\t77 'M'", output, StringComparison.Ordinal); // the page of /run/vmsmarker.info.page it maps
        Assert.DoesNotContain("corrupt", output, StringComparison.Ordinal);
    }

    [Fact]
    public void ReadAndTranslateWithPidUseThatProcesssPageTables()
    {
        GroundTruth.MarkerInfo marker = guest.Truth.Marker!;
        string pid = marker.Pid.ToString(CultureInfo.InvariantCulture);
        string va = $"0x{marker.VirtualAddress:x}";
        (int code, string stdout, string stderr) = VmStateCli.Run(["read", guest.Path("mig"), "--pid", pid, "--va", va, marker.Value.Length.ToString(CultureInfo.InvariantCulture), "-f", "raw"]);
        Assert.True(code == 0, stderr);
        Assert.Equal(marker.Value, stdout);

        (code, stdout, stderr) = VmStateCli.Run(["translate", guest.Path("mig"), va, "--pid", pid, "--json"]);
        Assert.True(code == 0, stderr);
        using JsonDocument doc = JsonDocument.Parse(stdout);
        Assert.Equal($"0x{marker.PhysicalAddress:x}", doc.RootElement.GetProperty("physicalAddress").GetString());

        (code, stdout, stderr) = VmStateCli.Run(["read", guest.Path("mig"), "--sym", "linux_banner", "14", "-f", "raw"]);
        Assert.True(code == 0, stderr);
        Assert.Equal("Linux version ", stdout);
    }

    [Fact]
    public void CorruptMapleTreesAndLogRingsEndWithAClearError()
    {
        string mig = guest.Path("mig");
        string rootPa, rootRetyped, countBitsPa, slotPa;
        using (MachineState m = SnapshotLoader.Open(mig, new SnapshotOpenOptions { CacheReads = true }))
        {
            LinuxKernel k = KernelLocator.Locate(m);
            KernelObject tree = MemoryMaps.FindTask(k, guest.Truth.Marker!.Pid).Member("mm").Member("mm_mt");
            KernelObject root = tree.Member("ma_root");
            ulong entry = root.ToUInt64();
            Assert.True(k.AddressSpace.TryTranslate(root.Address, out ulong pa));
            rootPa = $"0x{pa:x}";
            ulong type = (entry >> 3) & 0xf;
            // A leaf seen as an internal node (its VMA pointers become "children"), or the other way round.
            rootRetyped = $"0x{(entry & ~0x78UL) | ((type == 1 ? 2UL : 1UL) << 3):x}";
            ulong node = entry & ~0xffUL;
            string layout = type == 3 ? "struct maple_arange_64" : "struct maple_range_64";
            ulong slot0 = node + k.Types.Member(k.Types.FindType(layout), "slot").ByteOffset;
            Assert.True(k.AddressSpace.TryTranslate(slot0, out ulong sp));
            slotPa = $"0x{sp:x}";
            KernelObject ring = k.Object("prb").Deref().Member("desc_ring").Member("count_bits");
            Assert.True(k.AddressSpace.TryTranslate(ring.Address, out ulong cb));
            countBitsPa = $"0x{cb:x}";
        }

        string pid = guest.Truth.Marker!.Pid.ToString(CultureInfo.InvariantCulture);
        (string Edit, string[] Command, string Expect)[] cases =
        [
            ($"{rootPa}={rootRetyped}", ["maps", pid], "maple tree"),
            // A wild pointer in slot 0 of the root, encoded as a leaf child (type 1 << 3 | MAPLE_ENODE_NULL) or, in a
            // leaf root, read as a VMA pointer: either way the read fails.
            ($"{slotPa}=0xdead00000000100c", ["maps", pid], "not mapped"),
            ($"{countBitsPa}=60", ["dmesg"], "count_bits 60"),
        ];
        foreach ((string edit, string[] command, string expect) in cases)
        {
            string bad = System.IO.Path.Combine(guest.Dir, $"corrupt-{Guid.NewGuid():N}.mig");
            (int code, _, string stderr) = VmStateCli.Run(["edit", mig, "--set-u64-pa", edit, "-o", bad]);
            Assert.True(code == 0, stderr);
            (code, _, stderr) = VmStateCli.Run([command[0], bad, .. command[1..]]);
            Assert.True(code == 2, $"{string.Join(' ', command)} after {edit}: exit {code}, {stderr}");
            Assert.Contains(expect, stderr, StringComparison.Ordinal);
            Assert.StartsWith("vmstate: guest kernel: ", stderr, StringComparison.Ordinal);
            File.Delete(bad);
        }
    }

    [Fact]
    public void AGuestCannotSendControlSequencesToTheUsersTerminal()
    {
        // The regression: guest strings were printed raw, so a process named ESC ] 0 ; ... BEL could retitle (or,
        // with other sequences, reprogram) the terminal of whoever ran `vmstate ps`. The marker's comm is rewritten
        // in a real snapshot; text output shows the escapes, JSON keeps the exact string.
        string mig = guest.Path("mig");
        string commPa;
        using (MachineState m = SnapshotLoader.Open(mig, new SnapshotOpenOptions { CacheReads = true }))
        {
            LinuxKernel k = KernelLocator.Locate(m);
            KernelObject comm = MemoryMaps.FindTask(k, guest.Truth.Marker!.Pid).Member("comm");
            Assert.True(k.AddressSpace.TryTranslate(comm.Address, out ulong pa));
            commPa = $"0x{pa:x}";
        }

        const string hostile = "\u001b]0;pwn\u0007\u001b[2J\u009b";
        byte[] bytes = [.. System.Text.Encoding.UTF8.GetBytes(hostile), 0];
        Assert.True(bytes.Length <= 16);
        string bad = System.IO.Path.Combine(guest.Dir, $"escape-{Guid.NewGuid():N}.mig");
        (int code, _, string stderr) = VmStateCli.Run(["edit", mig, "--write-pa", $"{commPa}={Convert.ToHexString(bytes)}", "-o", bad]);
        Assert.True(code == 0, stderr);
        (code, string stdout, stderr) = VmStateCli.Run(["ps", bad]);
        Assert.True(code == 0, stderr);
        Assert.DoesNotContain('\u001b', stdout);
        Assert.DoesNotContain('\u0007', stdout);
        Assert.DoesNotContain('\u009b', stdout);
        Assert.Contains(@"\x1b]0;pwn\x07\x1b[2J\x9b", stdout, StringComparison.Ordinal);
        (code, stdout, stderr) = VmStateCli.Run(["ps", bad, "--json"]);
        Assert.True(code == 0, stderr);
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            Assert.Contains(doc.RootElement.GetProperty("processes").EnumerateArray(), p => p.GetProperty("comm").GetString() == hostile);
        }

        File.Delete(bad);
    }

    [Fact]
    public void ModuleBtfMatchesSysKernelBtfAndGivesModuleTypes()
    {
        using MachineState m = SnapshotLoader.Open(guest.Path("mig"), new SnapshotOpenOptions { CacheReads = true });
        LinuxKernel k = KernelLocator.Locate(m);
        var want = guest.Truth.Lines.Where(l => l.Key == "btf").Select(l => Fields(l.Text)).ToDictionary(f => f["name"], f => int.Parse(f["size"], CultureInfo.InvariantCulture));
        Assert.Equal(want["vmlinux"], k.Types.Length);
        IReadOnlyList<ModuleBtf> modules = ModuleBtfList.Read(k);
        Assert.Equal(want.Keys.Where(n => n != "vmlinux").Order(StringComparer.Ordinal), modules.Select(b => b.Name).Order(StringComparer.Ordinal));
        Assert.All(modules, b => Assert.Equal(want[b.Name], b.Size));

        // A type only e1000 defines, found through its split BTF; its members' types come from vmlinux's.
        (int code, string stdout, string stderr) = VmStateCli.Run(["types", guest.Path("mig"), "e1000_adapter", "--module", "e1000"]);
        Assert.True(code == 0, stderr);
        Assert.StartsWith("struct e1000_adapter {", stdout, StringComparison.Ordinal);
        Assert.Contains("struct net_device *", stdout, StringComparison.Ordinal);
        (code, stdout, stderr) = VmStateCli.Run(["types", guest.Path("mig"), "e1000_adapter"]);
        Assert.True(code == 0, stderr);
        Assert.Contains("module e1000", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void SystemMapAndBtfFileOverridesGiveTheSameKernel()
    {
        string mig = guest.Path("mig");
        string map = System.IO.Path.Combine(guest.Dir, $"System.map-{Guid.NewGuid():N}");
        string btf = System.IO.Path.Combine(guest.Dir, $"vmlinux-{Guid.NewGuid():N}.btf");
        LinuxKernel k;
        using (MachineState m = SnapshotLoader.Open(mig, new SnapshotOpenOptions { CacheReads = true }))
        {
            k = KernelLocator.Locate(m);

            // A System.map at link addresses (as `nm vmlinux` gives it): the runtime symbols minus the KASLR offset,
            // per-CPU offsets unmoved. Every fourth symbol only, so the override is visibly a different table.
            var lines = new List<string>();
            for (int i = 0; i < k.Symbols.Count; i += 4)
            {
                KernelSymbol sym = k.Symbols[i];
                ulong link = sym.Address >= 0xffff800000000000UL ? sym.Address - (ulong)k.KaslrOffset : sym.Address;
                lines.Add($"{link:x16} {sym.Type} {sym.Name}");
            }

            // The current task is per-CPU current_task, or pcpu_hot.current_task on 6.2-6.14 (no current_task symbol).
            string current = k.Symbols.Find("current_task") is null ? "pcpu_hot" : "current_task";
            foreach (string name in new[] { "_text", "linux_banner", "init_task", "__start_BTF", "__stop_BTF", "init_top_pgt", "page_offset_base", current, "__per_cpu_offset" })
            {
                KernelSymbol sym = k.Symbols.Find(name)!.Value;
                ulong link = sym.Address >= 0xffff800000000000UL ? sym.Address - (ulong)k.KaslrOffset : sym.Address;
                lines.Add($"{link:x16} {sym.Type} {sym.Name}");
            }

            File.WriteAllLines(map, lines);
            ulong start = k.Symbols.AddressOf("__start_BTF");
            byte[] raw = new byte[k.Symbols.AddressOf("__stop_BTF") - start];
            k.ReadExactly(start, raw, "BTF");
            File.WriteAllBytes(btf, raw);
        }

        (int code, string stdout, string stderr) = VmStateCli.Run(["kernel-info", mig, "--system-map", map, "--btf", btf]);
        Assert.True(code == 0, stderr);
        Assert.Contains($"from {map} (moved by the KASLR offset 0x{k.KaslrOffset:x}", stdout, StringComparison.Ordinal);
        Assert.Contains($"from {btf} (raw BTF)", stdout, StringComparison.Ordinal);

        (code, stdout, stderr) = VmStateCli.Run(["symbols", mig, "init_task", "--system-map", map, "--json"]);
        Assert.True(code == 0, stderr);
        Assert.Contains($"\"0x{k.Symbols.AddressOf("init_task"):x}\"", stdout, StringComparison.Ordinal);

        (code, stdout, stderr) = VmStateCli.Run(["ps", mig, "--json", "--system-map", map, "--btf", btf]);
        Assert.True(code == 0, stderr);
        foreach (GroundTruth.Process p in guest.Truth.Processes.Where(p => p.Pid < 200))
        {
            Assert.Contains($"\"pid\": {p.Pid},", stdout, StringComparison.Ordinal);
        }

        // A map of another kernel (shifted by 2 MiB) is refused, not used.
        File.WriteAllLines(map, File.ReadAllLines(map).Select(l => $"{ulong.Parse(l[..16], NumberStyles.HexNumber, CultureInfo.InvariantCulture) + (l.Contains(" _text", StringComparison.Ordinal) ? 0 : 0x200000UL):x16}{l[16..]}"));
        (code, _, stderr) = VmStateCli.Run(["ps", mig, "--system-map", map]);
        Assert.Equal(2, code);
        Assert.Contains("does not match this kernel", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void TheExtractedCoreMapsKernelAddressesWithoutAPtLoadPerEspfixAlias()
    {
        string dir = System.IO.Path.Combine(guest.Dir, $"extract-{Guid.NewGuid():N}");
        (int code, string stdout, string stderr) = VmStateCli.Run(["extract", guest.Path("mig"), "-o", dir, "--json"]);
        Assert.True(code == 0, stderr);
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            // The espfix64 area maps one page 65536 times; those aliases are capped, the real mappings stay.
            int segments = doc.RootElement.GetProperty("kernelVirtualSegments").GetInt32();
            Assert.InRange(segments, 10, 5000);
        }

        string banner = guest.Truth.Lines.Where(l => l.Key == "ksym" && l.Text.Contains("name=linux_banner ", StringComparison.Ordinal)).Select(l => Fields(l.Text)["addr"]).Single();
        (int gdb, string output) = GdbBatch.Run(System.IO.Path.Combine(dir, "core.elf"), $"x/s {banner}");
        Assert.Equal(0, gdb);
        Assert.Contains("\"Linux version ", output, StringComparison.Ordinal);
        Directory.Delete(dir, recursive: true);
    }

    [Fact]
    public void PstreePutsEveryPrintedProcessUnderItsParent()
    {
        (int code, string stdout, string stderr) = VmStateCli.Run(["pstree", guest.Path("mig"), "--json"]);
        Assert.True(code == 0, stderr);
        using JsonDocument doc = JsonDocument.Parse(stdout);
        var parentOf = new Dictionary<int, int>();
        void Walk(JsonElement node, int parent)
        {
            int pid = node.GetProperty("pid").GetInt32();
            parentOf[pid] = parent;
            foreach (JsonElement c in node.GetProperty("children").EnumerateArray())
            {
                Walk(c, pid);
            }
        }

        foreach (JsonElement root in doc.RootElement.EnumerateArray())
        {
            Walk(root, 0);
        }

        Assert.All(guest.Truth.Processes, p => Assert.Equal(p.Ppid, parentOf[p.Pid]));
    }

    [Fact]
    public void PsJsonOnTheCommandLineListsTheGuestsProcesses()
    {
        (int code, string stdout, string stderr) = VmStateCli.Run(["ps", guest.Path("mig"), "--json"]);
        Assert.True(code == 0, stderr);
        using JsonDocument doc = JsonDocument.Parse(stdout);
        JsonElement list = doc.RootElement.ValueKind == JsonValueKind.Array ? doc.RootElement : doc.RootElement.GetProperty("processes");
        AssertSameProcesses(guest.Truth.Processes.Select(p => p.Pid), list.EnumerateArray().Select(p => (p.GetProperty("pid").GetInt32(), p.GetProperty("ppid").GetInt32())));
        int uid1000 = guest.Truth.Processes.Single(p => p.Uid == 1000).Pid;
        Assert.Equal(1000, list.EnumerateArray().Single(p => p.GetProperty("pid").GetInt32() == uid1000).GetProperty("uid").GetInt32());
    }
}

public sealed class DefaultLinuxTests(DefaultLinuxGuest guest) : LinuxTests<DefaultLinuxGuest>(guest), IClassFixture<DefaultLinuxGuest>;

public sealed class La57PtiLinuxTests(La57PtiLinuxGuest guest) : LinuxTests<La57PtiLinuxGuest>(guest), IClassFixture<La57PtiLinuxGuest>;

public sealed class Linux612Tests(Linux612Guest guest) : LinuxTests<Linux612Guest>(guest), IClassFixture<Linux612Guest>;
