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
