using System.Buffers.Binary;
using System.Diagnostics;
using System.Text.Json;
using VmState.Arch.X86;
using VmState.Export;
using VmState.Formats.Elf;
using VmState.Integration.Harness;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;

namespace VmState.Integration;

/// <summary>
/// Boots the fixture guest once, pauses it, and records the same paused state three ways: QEMU's registers
/// (HMP info registers), QEMU's own dump-guest-memory, a migration stream and a savevm snapshot in a qcow2 disk.
/// </summary>
public sealed class PausedGuestFixture : IAsyncLifetime
{
    public string Dir { get; } = Directory.CreateTempSubdirectory("vmstate-extract-").FullName;

    public GroundTruth Truth { get; private set; } = null!;

    public IReadOnlyList<VcpuRegisters> Registers { get; private set; } = [];

    public string StreamPath => Path.Combine(Dir, "guest.mig");

    public string DumpPath => Path.Combine(Dir, "qemu-dump.elf");

    public string DiskPath => Path.Combine(Dir, "disk.qcow2");

    public async Task InitializeAsync()
    {
        Process.Start("qemu-img", ["create", "-q", "-f", "qcow2", DiskPath, "64M"]).WaitForExit();
        await using QemuGuest guest = await QemuGuest.StartAsync(new QemuGuestOptions { DiskPath = DiskPath }, CancellationToken.None);
        await guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
        Truth = guest.Truth;
        await guest.PauseAsync();
        Registers = await guest.InfoRegistersAsync();
        await guest.DumpGuestMemoryAsync(DumpPath);
        await guest.SaveVmAsync("extract-test");
        await guest.MigrateToFileAsync(StreamPath);
        await guest.QuitAsync();
    }

    public Task DisposeAsync()
    {
        if (Environment.GetEnvironmentVariable("VMSTATE_KEEP_WORK") != "1")
        {
            Directory.Delete(Dir, recursive: true);
        }

        return Task.CompletedTask;
    }
}

public sealed class ExtractTests(PausedGuestFixture guest) : IClassFixture<PausedGuestFixture>
{
    private const uint ElfLoad = 1;

    public static TheoryData<string> Inputs() => new() { "stream", "qcow2" };

    private MachineState Open(string input) => input == "stream"
        ? SnapshotLoader.Open(guest.StreamPath)
        : SnapshotLoader.Open(guest.DiskPath, new SnapshotOpenOptions { Snapshot = "extract-test" });

    private string Extract(string input)
    {
        string outDir = Path.Combine(guest.Dir, $"out-{input}");
        if (!File.Exists(Path.Combine(outDir, "core.elf")))
        {
            var args = new List<string> { "extract", input == "stream" ? guest.StreamPath : guest.DiskPath, "-o", outDir, "--xml", "--json" };
            if (input == "qcow2")
            {
                args.AddRange(["--snapshot", "extract-test"]);
            }

            (int code, string stdout, string stderr) = VmStateCli.Run(args);
            Assert.True(code == 0, $"vmstate extract failed ({code}): {stderr}");
            using JsonDocument summary = JsonDocument.Parse(stdout);
            Assert.Equal(2, summary.RootElement.GetProperty("cpus").GetInt32());
        }

        return outDir;
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void CoreRamEqualsQemuDumpRangeByRange(string input)
    {
        string core = Path.Combine(Extract(input), "core.elf");
        using MachineState ours = SnapshotLoader.Open(core);
        using MachineState qemu = SnapshotLoader.Open(guest.DumpPath);
        RamAssert.Equal(qemu.Memory, ours.Memory);
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void CpuCountAndRegistersMatchQemu(string input)
    {
        using MachineState m = Open(input);
        Assert.Equal(guest.Registers.Count, m.Cpus.Count);
        Assert.Equal(2, m.Cpus.Count);
        for (int i = 0; i < m.Cpus.Count; i++)
        {
            VcpuRegisters q = guest.Registers[i];
            X86CpuState c = m.Cpus[i];
            Assert.Equal(q.Cr3, c.Cr3);
            Assert.Equal(q.Rip, c.Rip);
            Assert.Equal(q.Rsp, c.Regs[4]);
            Assert.Equal(q.Cr0, c.Cr0);
            Assert.Equal(q.Cr4, c.Cr4);
        }
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void GdbShowsQemusRegistersAndSnapshotBytes(string input)
    {
        string core = Path.Combine(Extract(input), "core.elf");
        ulong marker = guest.Truth.Marker!.PhysicalAddress;
        (int code, string output) = GdbBatch.Run(core, "info threads", "thread apply all info registers rip rsp", $"x/16xb 0x{marker:x}", "x/1i $rip");
        Assert.Equal(0, code);
        for (int i = 0; i < guest.Registers.Count; i++)
        {
            // gdb names threads by NT_PRSTATUS pr_pid = cpu index + 1.
            string section = output[output.IndexOf($"(LWP {i + 1}):", StringComparison.Ordinal)..];
            Assert.Contains($"rip            0x{guest.Registers[i].Rip:x}", section);
            Assert.Contains($"rsp            0x{guest.Registers[i].Rsp:x}", section);
        }

        using MachineState m = Open(input);
        byte[] bytes = new byte[16];
        m.Memory.ReadExactly(marker, bytes);
        Assert.Equal("VMSTATE-MARKER-", System.Text.Encoding.ASCII.GetString(bytes, 0, 15));
        string expected = string.Join("\t", bytes[..8].Select(x => $"0x{x:x2}"));
        Assert.Contains(expected, output);
        Assert.DoesNotContain("Cannot access memory", output);
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void HardwareJsonMacsEqualWhatTheGuestPrinted(string input)
    {
        string json = Path.Combine(Extract(input), "hardware.json");
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(json));
        var macs = new Dictionary<string, string>();
        foreach (JsonElement d in doc.RootElement.GetProperty("devices").EnumerateArray())
        {
            if (d.TryGetProperty("decoded", out JsonElement dec) && dec.TryGetProperty("mac", out JsonElement mac))
            {
                macs[d.GetProperty("id").GetString()!] = mac.GetString()!;
            }
        }

        GroundTruth.Nic virtio = guest.Truth.Nics.Single(n => n.Driver == "virtio_net");
        GroundTruth.Nic e1000 = guest.Truth.Nics.Single(n => n.Driver == "e1000");
        Assert.Equal(virtio.Mac, macs.Single(kv => kv.Key.EndsWith("/virtio-net", StringComparison.Ordinal)).Value);
        Assert.Equal(e1000.Mac, macs.Single(kv => kv.Key.EndsWith("/e1000", StringComparison.Ordinal)).Value);
        Assert.Equal(2, doc.RootElement.GetProperty("cpus").GetArrayLength());
        Assert.True(File.Exists(Path.Combine(Extract(input), "hardware.xml")));
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void VmcoreinfoNoteCarriesTheGuestsRelease(string input)
    {
        using MachineState core = SnapshotLoader.Open(Path.Combine(Extract(input), "core.elf"));
        byte[]? note = Assert.IsType<ElfCoreOrigin>(core.Origin).VmcoreinfoNote;
        Assert.NotNull(note);
        string text = VmcoreinfoLocator.Text(note);
        Assert.Contains($"OSRELEASE={guest.Truth.KernelVersion}\n", text);
    }

    [Fact]
    public void TheDefaultCoreSuitsReadersByPaddrAndByVaddr()
    {
        // Volatility 3's ELF layer (layers/elf.py) takes every PT_LOAD with p_filesz == p_memsz > 0 at p_paddr, in
        // header order, and its segmented layer bisects them as sorted and disjoint: the default core must give it
        // exactly that, with guest RAM where it is. gdb and drgn read kernel addresses by p_vaddr; crash finds the
        // kernel through VMCOREINFO. (Volatility itself needs PyPI; it was run by hand, see docs/user-guide.md.)
        string core = Path.Combine(Extract("stream"), "core.elf");
        const ulong maxPhysical = (1UL << 52) - 1;
        var volatilitySegments = new List<(ulong Vaddr, ulong Paddr, ulong Size)>();
        using (FileStream f = File.OpenRead(core))
        {
            byte[] header = new byte[64];
            f.ReadExactly(header);
            long phoff = (long)BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(32));
            int phnum = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(56));
            byte[] table = new byte[phnum * 56];
            f.Position = phoff;
            f.ReadExactly(table);
            for (int i = 0; i < phnum; i++)
            {
                ReadOnlySpan<byte> p = table.AsSpan(i * 56, 56);
                ulong filesz = BinaryPrimitives.ReadUInt64LittleEndian(p[32..]);
                if (BinaryPrimitives.ReadUInt32LittleEndian(p) == ElfLoad && filesz > 0 && filesz == BinaryPrimitives.ReadUInt64LittleEndian(p[40..]))
                {
                    volatilitySegments.Add((BinaryPrimitives.ReadUInt64LittleEndian(p[16..]), BinaryPrimitives.ReadUInt64LittleEndian(p[24..]), filesz));
                }
            }
        }

        for (int i = 1; i < volatilitySegments.Count; i++)
        {
            (ulong _, ulong before, ulong size) = volatilitySegments[i - 1];
            Assert.True(volatilitySegments[i].Paddr >= before + size, $"PT_LOAD p_paddr 0x{volatilitySegments[i].Paddr:x} is not after [0x{before:x}, +0x{size:x}): Volatility 3 would misread the core");
        }

        using MachineState m = Open("stream");
        Assert.Equal(m.Memory.Ranges.Select(r => (r.Start, r.Start, r.Length)), volatilitySegments.Where(s => s.Paddr <= maxPhysical));
        var kernel = volatilitySegments.Where(s => s.Paddr > maxPhysical).ToList();
        Assert.InRange(kernel.Count, 10, 5000);
        Assert.All(kernel, s => Assert.Equal(s.Vaddr, s.Paddr));

        string banner = guest.Truth.Lines.Where(l => l.Key == "ksym" && l.Text.StartsWith("name=linux_banner ", StringComparison.Ordinal)).Select(l => l.Text.Split(' ')[1]["addr=".Length..]).Single();
        ulong marker = guest.Truth.Marker!.PhysicalAddress;
        (int code, string gdb) = GdbBatch.Run(core, $"x/s {banner}", $"x/s 0x{marker:x}");
        Assert.True(code == 0, gdb);
        Assert.Contains("\"Linux version ", gdb, StringComparison.Ordinal);
        Assert.Contains("\"VMSTATE-MARKER-", gdb, StringComparison.Ordinal);

        // drgn (Debian's python3-drgn) with no debug info: kernel virtual addresses by their PT_LOADs (it cannot walk
        // the page tables of a core without them, like QEMU's own dump), physical ones by p_paddr.
        string script = "import sys, drgn\np = drgn.Program()\np.set_core_dump(sys.argv[1])\n"
            + "print(p.flags)\nprint(p.read(int(sys.argv[2], 16), 14))\nprint(p.read(int(sys.argv[3], 16), 15, True))\n";
        HostCommand.Result drgn = HostCommand.Run("/usr/bin/python3", ["-c", script, core, banner, $"{marker:x}"], guest.Dir, TimeSpan.FromMinutes(2));
        Assert.True(drgn.ExitCode == 0, drgn.ToString());
        Assert.Contains("IS_LINUX_KERNEL", drgn.Stdout, StringComparison.Ordinal);
        Assert.Contains("b'Linux version '", drgn.Stdout, StringComparison.Ordinal);
        Assert.Contains("b'VMSTATE-MARKER-'", drgn.Stdout, StringComparison.Ordinal);

        // crash (no vmlinux in CI, so no session): it opens the core and finds the release in its VMCOREINFO.
        HostCommand.Result crash = HostCommand.Run("crash", ["--osrelease", core], guest.Dir, TimeSpan.FromMinutes(2));
        Assert.True(crash.ExitCode == 0, crash.ToString());
        Assert.Equal(guest.Truth.KernelVersion, crash.Stdout.Trim());
    }

    [Fact]
    public void NoOutputEverReplacesItsInputWhateverItsName()
    {
        // Regressions: `extract out/core.elf -o out` replaced its own input, and `edit` through a symlink or a hard
        // link wrote over its input, because outputs were compared with inputs by path string.
        string dir = Path.Combine(guest.Dir, $"identity-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        string core = Path.Combine(dir, "core.elf");
        File.Copy(guest.DumpPath, core);
        byte[] coreBefore = SHA(core);
        (int code, _, string stderr) = VmStateCli.Run(["extract", core, "-o", dir]);
        Assert.True(code == 2, stderr);
        Assert.Contains("is the input", stderr, StringComparison.Ordinal);
        Assert.Equal(coreBefore, SHA(core));
        Assert.Equal([core], Directory.GetFileSystemEntries(dir));

        string mig = Path.Combine(dir, "guest.mig");
        File.Copy(guest.StreamPath, mig);
        byte[] migBefore = SHA(mig);
        string symlink = File.CreateSymbolicLink(Path.Combine(dir, "sym.mig"), mig).FullName;
        string hardlink = Path.Combine(dir, "hard.mig");
        Process.Start("ln", [mig, hardlink])!.WaitForExit();
        Assert.True(File.Exists(hardlink));
        foreach (string target in new[] { mig, symlink, hardlink, Path.Combine(dir, ".", "sub", "..", "guest.mig") })
        {
            Directory.CreateDirectory(Path.Combine(dir, "sub"));
            (code, _, stderr) = VmStateCli.Run(["edit", mig, "--set-reg", "0:rax=1", "-o", target]);
            Assert.True(code == 2, $"{target}: exit {code}, {stderr}");
            Assert.Contains("is the input", stderr, StringComparison.Ordinal);
            Assert.Equal(migBefore, SHA(mig));
        }

        Assert.Empty(Directory.GetFiles(dir, "*.tmp"));
        Directory.Delete(dir, recursive: true);
    }

    [Fact]
    public void OutputsAreNoMoreReadableThanTheSnapshot()
    {
        // Regression: outputs were created 0644 from a 0640 input, so guest RAM became readable to every user.
        string dir = Path.Combine(guest.Dir, $"modes-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        string mig = Path.Combine(dir, "guest.mig");
        File.Copy(guest.StreamPath, mig);
        const UnixFileMode mode0640 = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead;
        File.SetUnixFileMode(mig, mode0640);
        (int code, _, string stderr) = VmStateCli.Run(["extract", mig, "-o", Path.Combine(dir, "out"), "--xml"]);
        Assert.True(code == 0, stderr);
        (code, _, stderr) = VmStateCli.Run(["edit", mig, "--set-reg", "0:rax=1", "-o", Path.Combine(dir, "edited.mig")]);
        Assert.True(code == 0, stderr);
        foreach (string output in new[] { "out/core.elf", "out/hardware.json", "out/hardware.xml", "edited.mig" })
        {
            UnixFileMode got = File.GetUnixFileMode(Path.Combine(dir, output));
            Assert.True((got & ~mode0640) == 0, $"{output} is {got}, wider than the input's {mode0640}");
        }

        // A reused directory: a second extract without --xml leaves no hardware.xml of the first run behind.
        (code, string stdout, stderr) = VmStateCli.Run(["extract", mig, "-o", Path.Combine(dir, "out")]);
        Assert.True(code == 0, stderr);
        Assert.Contains("hardware.xml: removed", stdout, StringComparison.Ordinal);
        Assert.Equal(["core.elf", "hardware.json"], Directory.GetFileSystemEntries(Path.Combine(dir, "out")).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Directory.Delete(dir, recursive: true);
    }

    [Fact]
    public void AKilledExtractLeavesATemporaryThatTheNextRunRemoves()
    {
        string dir = Path.Combine(guest.Dir, $"killed-{Guid.NewGuid():N}");
        string dll = Path.Combine(AppContext.BaseDirectory, "vmstate.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { dll, "extract", guest.StreamPath, "-o", dir })
        {
            psi.ArgumentList.Add(a);
        }

        // SIGKILL as soon as the core's temporary appears (an extract of this guest takes well under a second, so a
        // run that finished first is tried again).
        bool killed = false;
        for (int attempt = 0; attempt < 5 && !killed; attempt++)
        {
            using Process p = Process.Start(psi)!;
            while (!(Directory.Exists(dir) && Directory.GetFiles(dir, ".core.elf.*.tmp").Length > 0) && !p.HasExited)
            {
                Thread.Sleep(2);
            }

            if (!p.HasExited)
            {
                p.Kill();
                killed = true;
            }

            p.WaitForExit();
            if (!killed && Directory.Exists(dir))
            {
                Directory.Delete(dir, recursive: true);
            }
        }

        Assert.True(killed, "extract always finished before it could be killed");
        Assert.NotEmpty(Directory.GetFiles(dir, ".*.tmp"));
        Assert.False(File.Exists(Path.Combine(dir, "core.elf")));
        (int code, _, string stderr) = VmStateCli.Run(["extract", guest.StreamPath, "-o", dir]);
        Assert.True(code == 0, stderr);
        Assert.Empty(Directory.GetFiles(dir, ".*.tmp"));
        Assert.Equal(["core.elf", "hardware.json"], Directory.GetFileSystemEntries(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Directory.Delete(dir, recursive: true);
    }

    private static byte[] SHA(string path)
    {
        using FileStream f = File.OpenRead(path);
        return System.Security.Cryptography.SHA256.HashData(f);
    }
}
