using System.Globalization;
using System.Text.Json;
using VmState.Arch.X86;
using VmState.Integration.Harness;
using VmState.Linux;
using VmState.Machine;
using VmState.Snapshots;

namespace VmState.Integration;

/// <summary>A paused fixture guest saved as a migration stream and as QEMU's own ELF dump.</summary>
public abstract class LinuxGuest : IAsyncLifetime
{
    public string Dir { get; } = Directory.CreateTempSubdirectory("vmstate-linux-").FullName;

    public GroundTruth Truth { get; private set; } = null!;

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
        using MachineState m = SnapshotLoader.Open(guest.Path(kind), new SnapshotOpenOptions { MemoryMap = true });
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

    [Theory]
    [MemberData(nameof(Kinds))]
    public void SymbolsProcessesAndModulesMatchWhatTheGuestPrinted(string kind)
    {
        using MachineState m = SnapshotLoader.Open(guest.Path(kind), new SnapshotOpenOptions { MemoryMap = true });
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
        Assert.Equal(guest.Truth.KallsymsCount, k.Symbols.Count + modules.Sum(x => ModuleList.Symbols(k, x).Count));

        IReadOnlyList<LinuxProcess> processes = ProcessList.Read(k);
        AssertSameProcesses(guest.Truth.Processes.Select(p => p.Pid), processes.Select(p => (p.Pid, p.Ppid)));
        foreach (GroundTruth.Process want in guest.Truth.Processes)
        {
            LinuxProcess got = processes.Single(p => p.Pid == want.Pid);
            Assert.Equal(want.Ppid, got.Ppid);
            Assert.Equal((uint)want.Uid, got.Uid);
            Assert.Equal(want.Comm, got.Comm);
        }

        IReadOnlyList<LinuxNetDevice> nics = NetDeviceList.Read(k);
        foreach (GroundTruth.Nic nic in guest.Truth.Nics)
        {
            Assert.Equal(nic.Mac, nics.Single(n => n.Name == nic.Name).Mac);
        }

        KernelSummary summary = KernelSummary.Read(k);
        Assert.Equal(guest.Line("hostname"), summary.Hostname);
        Assert.Equal(guest.Line("cmdline"), summary.CommandLine);
        Assert.Equal(int.Parse(Fields(guest.Line("cpus"))["count"], CultureInfo.InvariantCulture), summary.Cpus.Count);
    }

    [Fact]
    public void TheMarkerIsReadThroughTheMarkerProcesssOwnPageTables()
    {
        using MachineState m = SnapshotLoader.Open(guest.Path("mig"), new SnapshotOpenOptions { MemoryMap = true });
        LinuxKernel k = KernelLocator.Locate(m);
        GroundTruth.MarkerInfo marker = guest.Truth.Marker!;
        LinuxProcess p = ProcessList.Read(k).Single(x => x.Pid == marker.Pid);
        ulong pgd = k.ObjectAt(p.TaskAddress, "struct task_struct").Member("mm").Member("pgd").ToUInt64();
        AddressSpace space = k.ProcessAddressSpace(pgd);
        byte[] b = new byte[marker.Value.Length];
        Assert.Equal(b.Length, space.Read(marker.VirtualAddress, b));
        Assert.Equal(marker.Value, System.Text.Encoding.ASCII.GetString(b));
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
