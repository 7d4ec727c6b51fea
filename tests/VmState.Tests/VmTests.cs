using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using VmState.Formats.Elf;
using VmState.Formats.Migration;
using VmState.IO;
using VmState.Linux;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;
using VmState.Tests.Formats;
using VmState.Tests.Linux;
using VmState.Tests.Support;

namespace VmState.Tests;

/// <summary><see cref="Vm.Open"/> on every kind of snapshot file, its lifetime, and its Linux views.</summary>
public sealed class VmTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-vm-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static byte[] Stream()
    {
        var b = new StreamBuilder().Block("pc.ram", 1 << 20);
        for (int i = 0; i < 8; i++)
        {
            b.Page("pc.ram", (ulong)i * 4096, Enumerable.Repeat((byte)(i + 1), 4096).ToArray());
        }

        b.Cpu(0, new ulong[16], rip: 0x1234, cr3: 0x9000);
        return b.Build();
    }

    /// <summary>libvirt's virQEMUSaveHeader (92 bytes, little-endian), the domain XML, then the stream.</summary>
    private static byte[] VirshSave(byte[] stream)
    {
        byte[] xml = Encoding.ASCII.GetBytes("<domain type='kvm'><name>t</name></domain>\0");
        byte[] file = new byte[92 + xml.Length + stream.Length];
        "LibvirtQemudSave"u8.CopyTo(file);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(16), 2);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(20), (uint)xml.Length);
        xml.CopyTo(file, 92);
        stream.CopyTo(file, 92 + xml.Length);
        return file;
    }

    private string Write(string name, byte[] data)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, data);
        return path;
    }

    private string Input(MachineOriginKind kind) => kind switch
    {
        MachineOriginKind.MigrationStream => Write("vm.mig", Stream()),
        MachineOriginKind.VirshSave => Write("vm.save", VirshSave(Stream())),
        MachineOriginKind.Qcow2Snapshot => Write("vm.qcow2", Qcow2Tests.Image(Stream(), name: "before-upgrade", id: "7")),
        MachineOriginKind.ElfCore => Core(),
        _ => Write("vm.raw", Enumerable.Repeat((byte)0x5a, 64 << 10).ToArray()),
    };

    private string Core()
    {
        string stream = Write("for-core.mig", Stream());
        string core = Path.Combine(_dir, "vm.core");
        using (Vm source = Vm.Open(stream))
        {
            ElfCoreWriter.Write(source.Machine, core, null);
        }

        return core;
    }

    private static int OpenHandlesOf(string path)
    {
        int n = 0;
        foreach (string fd in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            try
            {
                if (new FileInfo(fd).LinkTarget == path)
                {
                    n++;
                }
            }
            catch (IOException)
            {
                // The descriptor was closed while we looked (the directory's own fd, a thread's file).
            }
        }

        return n;
    }

    [Theory]
    [InlineData(MachineOriginKind.MigrationStream)]
    [InlineData(MachineOriginKind.VirshSave)]
    [InlineData(MachineOriginKind.Qcow2Snapshot)]
    [InlineData(MachineOriginKind.ElfCore)]
    public void EverySnapshotKindOpensWithItsOriginAndTheSameMachine(MachineOriginKind kind)
    {
        string path = Input(kind);
        using Vm vm = Vm.Open(path);
        Assert.Equal(kind, vm.Origin.Kind);
        Assert.Equal(path, vm.Origin.Path);
        Assert.False(vm.IsLive);
        Assert.Null(vm.Live);
        Assert.Equal(kind == MachineOriginKind.Qcow2Snapshot ? "7" : null, (vm.Origin as Qcow2SnapshotOrigin)?.SnapshotId);
        Assert.Equal(kind != MachineOriginKind.ElfCore, vm.Origin is MigrationStreamOrigin);
        Assert.Equal(kind == MachineOriginKind.ElfCore, vm.Origin is ElfCoreOrigin);
        Assert.Equal(0x1234UL, vm.Machine.Cpus[0].Rip);
        byte[] page = new byte[4096];
        Assert.Equal(page.Length, vm.Machine.Memory.Read(5 * 4096, page));
        Assert.All(page, b => Assert.Equal(6, b));
    }

    [Theory]
    [InlineData(MachineOriginKind.MigrationStream, true, true, true)]
    [InlineData(MachineOriginKind.VirshSave, true, true, true)]
    [InlineData(MachineOriginKind.Qcow2Snapshot, true, true, true)]
    [InlineData(MachineOriginKind.ElfCore, false, true, false)]
    [InlineData(MachineOriginKind.RawImage, false, false, false)]
    public void EachSnapshotKindHasTheCapabilitiesOfItsFormat(MachineOriginKind kind, bool sparse, bool registers, bool devices)
    {
        using Vm vm = Vm.Open(Input(kind), new VmOpenOptions { AllowRaw = true });
        Assert.Equal(kind, vm.Origin.Kind);
        Assert.True(vm.TryGet(out IPhysicalMemory? memory));
        Assert.Same(vm.Machine.Memory, memory);
        Assert.Equal(sparse, vm.Can<ISparseMemory>());
        Assert.Equal(registers, vm.TryGet(out IVcpuRegisters? cpus));
        Assert.Equal(registers ? 0x1234UL : null, cpus?.Cpus[0].Rip);
        Assert.Equal(devices, vm.TryGet(out IDeviceStates? states));
        Assert.Equal(devices, states?.FindDevice("cpu") is not null);

        // A file is opened read-only and cannot run: no writable memory, no live control, no snapshotting.
        Assert.False(vm.Can<IWritableMemory>());
        Assert.False(vm.TryGet(out ILiveControl? control));
        Assert.Null(control);
        Assert.False(vm.Can<ISnapshotting>());

        // Only the capability interfaces are answered, not any type the objects behind them happen to be.
        Assert.False(vm.Can<MachineState>());
        Assert.False(vm.Can<IDisposable>());
    }

    [Fact]
    public void AFileWithNoKnownMagicIsRefusedUnlessRawIsAllowed()
    {
        string path = Input(MachineOriginKind.RawImage);
        Assert.Throws<VmStateFormatException>(() => Vm.Open(path));
        Assert.Equal(0, OpenHandlesOf(path));

        using Vm vm = Vm.Open(path, new VmOpenOptions { AllowRaw = true });
        Assert.Equal(MachineOriginKind.RawImage, vm.Origin.Kind);
        byte[] b = new byte[16];
        Assert.Equal(16, vm.Machine.Memory.Read(0x8000, b));
        Assert.All(b, x => Assert.Equal(0x5a, x));
    }

    [Fact]
    public void AQcow2SnapshotIsPickedByName()
    {
        string path = Input(MachineOriginKind.Qcow2Snapshot);
        using Vm vm = Vm.Open(path, new VmOpenOptions { Snapshot = "before-upgrade" });
        Qcow2SnapshotOrigin origin = Assert.IsType<Qcow2SnapshotOrigin>(vm.Origin);
        Assert.Equal(("7", "before-upgrade", "qcow2 snapshot 'before-upgrade' (id 7)"), (origin.SnapshotId, origin.SnapshotName, origin.Description));
        VmStateNotFoundException e = Assert.Throws<VmStateNotFoundException>(() => Vm.Open(path, new VmOpenOptions { Snapshot = "after-upgrade" }));
        Assert.Equal((VmStateObjectKind.Snapshot, "after-upgrade"), (e.Kind, e.Name));
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public async Task DisposingTheVmClosesItsFile(bool async, bool cacheReads)
    {
        string path = Input(MachineOriginKind.Qcow2Snapshot);
        Vm vm = Vm.Open(path, new VmOpenOptions { CacheReads = cacheReads });
        Assert.True(OpenHandlesOf(path) > 0);
        if (async)
        {
            await vm.DisposeAsync();
        }
        else
        {
            vm.Dispose();
        }

        Assert.Equal(0, OpenHandlesOf(path));
        Assert.Throws<ObjectDisposedException>(() => vm.Machine);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => vm.PauseAsync());

        // A second disposal, of either kind, is harmless.
        vm.Dispose();
        await vm.DisposeAsync();
    }

    [Fact]
    public async Task PausingASnapshotIsANoOpScope()
    {
        using Vm vm = Vm.Open(Input(MachineOriginKind.MigrationStream));
        VmPause pause = await vm.PauseAsync();
        Assert.False(pause.StoppedGuest);
        await pause.DisposeAsync();
        Assert.True(pause.IsResumed);
        Assert.Null(pause.ResumeFailure);
    }

    [Theory]
    [InlineData("linux_banner", "linux_banner", 0UL)]
    [InlineData("init_task+0x10", "init_task", 0x10UL)]
    [InlineData("init_task+16", "init_task", 16UL)]
    [InlineData("init_task+0X1f", "init_task", 0x1fUL)]
    [InlineData("init_task+4k", "init_task", 4096UL)]
    public void SymbolExpressionsParse(string text, string name, ulong offset) =>
        Assert.Equal(new SymbolExpression(name, offset), SymbolExpression.Parse(text));

    [Theory]
    [InlineData("init_task+", "symbol offset \"\" is not a number")]
    [InlineData("init_task+0xzz", "symbol offset \"0xzz\" is not a number")]
    [InlineData("init_task+-1", "symbol offset \"-1\" is not a number")]
    [InlineData("init_task+3q", "unknown suffix 'q'")]
    [InlineData("init_task+18446744073709551615g", "larger than 2^64-1")]
    public void BadSymbolOffsetsAreRefused(string text, string message)
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => SymbolExpression.Parse(text));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    /// <summary>The synthetic kernel written as an ELF core, so the Vm opens a real file.</summary>
    private (SyntheticLinux Linux, string Path) LinuxCore()
    {
        var s = new SyntheticLinux();
        string path = Path.Combine(_dir, "linux.core");
        ElfCoreWriter.Write(s.Machine, path, s.Machine.Origin.CarriedVmcoreinfoNote);
        return (s, path);
    }

    [Fact]
    public void TheLinuxViewsOfASnapshotAreLocatedOnceAndCached()
    {
        (SyntheticLinux s, string path) = LinuxCore();
        using Vm vm = Vm.Open(path);
        LinuxKernel kernel = vm.Linux.Kernel;
        Assert.Same(kernel, vm.Linux.Kernel);

        IReadOnlyList<LinuxProcess> processes = vm.Linux.Processes();
        Assert.Equal([1, 2, 3, 100, 200], processes.Select(p => p.Pid).Order());
        Assert.Same(processes, vm.Linux.Processes());
        Assert.Equal(ProcessList.Read(kernel).Select(p => (p.Pid, p.Comm)), processes.Select(p => (p.Pid, p.Comm)));
        Assert.Contains(vm.Linux.Processes(threads: true), p => p.Pid != p.Tgid);

        vm.Linux.Refresh();
        Assert.NotSame(processes, vm.Linux.Processes());
        Assert.Same(kernel, vm.Linux.Kernel);
    }

    [Fact]
    public void SymbolsResolveWithTheirOffsets()
    {
        (SyntheticLinux s, string path) = LinuxCore();
        using Vm vm = Vm.Open(path);
        Assert.Equal(s.InitTask, vm.Linux.Symbol("init_task"));
        Assert.Equal(s.InitTask + 0x10, vm.Linux.Symbol("init_task+0x10"));
        Assert.Equal(s.InitTask + 16, vm.Linux.Symbol("init_task+16"));
        UnknownSymbolException e = Assert.Throws<UnknownSymbolException>(() => vm.Linux.Symbol("no_such_symbol+0x10"));
        Assert.Equal("no_such_symbol", e.Name);
        Assert.Equal(VmStateObjectKind.Symbol, Assert.IsAssignableFrom<VmStateNotFoundException>(e).Kind);
        Assert.Throws<ArgumentException>(() => vm.Linux.Symbol("init_task+ten"));
    }

    [Fact]
    public void TheKernelOptionsOfTheVmReachTheLocator()
    {
        (SyntheticLinux s, string path) = LinuxCore();
        ulong banner;
        using (Vm plain = Vm.Open(path))
        {
            banner = plain.Linux.Symbol("linux_banner");
            Assert.Throws<UnknownSymbolException>(() => plain.Linux.Symbol("only_in_the_map"));
        }

        // A System.map as the build wrote it (unrandomised: _text at 0xffffffff81000000), with one symbol that
        // kallsyms does not have: it resolves only when the Vm was opened with the map.
        const ulong LinkText = 0xffffffff81000000UL;
        ulong linkBanner = banner - s.Text + LinkText;
        string map = Path.Combine(_dir, "System.map");
        File.WriteAllText(map, string.Create(CultureInfo.InvariantCulture, $"{LinkText:x16} T _text\n{linkBanner:x16} D linux_banner\n{linkBanner + 0x40:x16} D only_in_the_map\n"));
        using Vm vm = Vm.Open(path, new VmOpenOptions { Kernel = new KernelLocatorOptions { SystemMapPath = map } });
        Assert.Equal(banner + 0x48, vm.Linux.Symbol("only_in_the_map+8"));

        using Vm nowhere = Vm.Open(path, new VmOpenOptions { Kernel = new KernelLocatorOptions { UseVmcoreinfo = false, UseCpuState = false, UseBannerScan = false } });
        Assert.Throws<KernelDataException>(() => nowhere.Linux.Kernel);
    }
}
