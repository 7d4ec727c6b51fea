using System.Globalization;
using System.Text.Json;
using VmState.Formats.Migration;
using VmState.Formats.Migration.Devices;
using VmState.Integration.Harness;
using VmState.Live;
using VmState.Machine;
using VmState.Snapshots;

namespace VmState.Integration;

/// <summary>A snapshot of the running fixture guest, taken once for the edit/resume tests.</summary>
public sealed class RunningGuestSnapshot : IAsyncLifetime
{
    public string Dir { get; } = Directory.CreateTempSubdirectory("vmstate-edit-").FullName;

    public string Original => Path.Combine(Dir, "original.mig");

    public GroundTruth Truth { get; private set; } = null!;

    public int LastTickBefore { get; private set; }

    public async Task InitializeAsync()
    {
        await using QemuGuest guest = await QemuGuest.StartAsync(new QemuGuestOptions());
        await guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
        await guest.WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER tick=", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        Truth = guest.Truth;
        await guest.PauseAsync();
        LastTickBefore = EditResumeTests.LastTick(guest.SerialText);
        await guest.MigrateToFileAsync(Original);
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

public sealed class EditResumeTests(RunningGuestSnapshot snap) : IClassFixture<RunningGuestSnapshot>
{
    public static int LastTick(string serial) => serial.Split('\n')
        .Select(l => l.TrimEnd('\r'))
        .Where(l => l.StartsWith("VMSTATE-TICK ", StringComparison.Ordinal))
        .Select(l => int.Parse(l["VMSTATE-TICK ".Length..], CultureInfo.InvariantCulture))
        .DefaultIfEmpty(-1).Last();

    private static async Task<QemuGuest> ResumeAsync(string stream)
    {
        QemuGuest guest = await QemuGuest.StartAsync(new QemuGuestOptions { Incoming = stream });
        // The snapshot was taken paused, so the resumed VM waits for cont (globalstate runstate "paused").
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (await guest.Qmp.QueryStatusAsync() is "inmigrate")
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), "the incoming migration did not finish");
            await Task.Delay(50);
        }

        await guest.ResumeAsync();
        return guest;
    }

    [Fact]
    public void AnEditWithNoChangesIsByteIdentical()
    {
        using MachineState m = SnapshotLoader.Open(snap.Original);
        string copy = Path.Combine(snap.Dir, "unchanged.mig");
        new SnapshotEditor(m).Save(copy);
        Assert.True(File.ReadAllBytes(snap.Original).AsSpan().SequenceEqual(File.ReadAllBytes(copy)));
    }

    [Fact]
    public async Task AnUnchangedRoundTripResumesAndTheTickCounterCarriesOn()
    {
        string copy = Path.Combine(snap.Dir, "roundtrip.mig");
        (int code, _, string stderr) = VmStateCli.Run(["edit", snap.Original, "-o", copy]);
        Assert.True(code == 0, stderr);
        await using QemuGuest guest = await ResumeAsync(copy);
        string line = await guest.WaitForSerialLineAsync(l => l.StartsWith("VMSTATE-TICK ", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        int first = int.Parse(line["VMSTATE-TICK ".Length..], CultureInfo.InvariantCulture);
        Assert.InRange(first, snap.LastTickBefore + 1, snap.LastTickBefore + 2);
    }

    [Fact]
    public async Task EditedMemoryAndMacsAreWhatTheResumedGuestShows()
    {
        const string NewVirtioMac = "52:54:00:de:ad:01";
        const string NewE1000Mac = "52:54:00:be:ef:02";
        const ulong NewValue = 0x0123456789abcdef;
        string edited = Path.Combine(snap.Dir, "edited.mig");
        GroundTruth.MarkerInfo marker = snap.Truth.Marker!;
        (int code, string stdout, string stderr) = VmStateCli.Run(
        [
            "edit", snap.Original, "-o", edited, "--json",
            "--set-u64-pa", $"0x{marker.GValuePhysicalAddress:x}=0x{NewValue:x}",
            "--set-mac", $"virtio-net={NewVirtioMac}",
            "--set-mac", $"e1000={NewE1000Mac}",
            "--guest",
        ]);
        Assert.True(code == 0, stderr);
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            // g_value's page, and the pages of the kernel's dev_addr / perm_addr copies of both MACs.
            Assert.InRange(doc.RootElement.GetProperty("pagesChanged").GetInt32(), 2, 5);
        }

        // Only the edited bytes differ: same length, and the same RAM except the one page.
        Assert.Equal(new FileInfo(snap.Original).Length, new FileInfo(edited).Length);

        await using QemuGuest guest = await ResumeAsync(edited);
        await guest.WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER tick=", StringComparison.Ordinal) && l.EndsWith($"value=0x{NewValue:x16}", StringComparison.Ordinal), TimeSpan.FromSeconds(60));

        // The guest prints its interfaces' addresses (/sys/class/net/*/address) with every tick.
        await guest.WaitForSerialLineAsync(l => l == $"VMSTATE-MACS eth0={NewVirtioMac},eth1={NewE1000Mac}", TimeSpan.FromSeconds(60));
        JsonElement filters = await guest.Qmp.ExecuteAsync("query-rx-filter");
        Assert.Contains(filters.EnumerateArray(), f => f.GetProperty("main-mac").GetString() == NewVirtioMac);

        // What the resumed device holds: save it again and read it back.
        await guest.PauseAsync();
        string again = Path.Combine(snap.Dir, "resaved.mig");
        await guest.MigrateToFileAsync(again);
        using MachineState m = SnapshotLoader.Open(again);
        DeviceState e1000 = m.Devices.Single(d => d.IdStr.EndsWith("/e1000", StringComparison.Ordinal));
        Assert.Equal(NewE1000Mac, e1000.Decoded["mac"]);
        Assert.Equal(NewE1000Mac, e1000.Decoded["eeprom-mac"]);
        Assert.Equal("valid", e1000.Decoded["eeprom-checksum"]);
        Assert.Equal(NewVirtioMac, m.Devices.Single(d => d.IdStr.EndsWith("/virtio-net", StringComparison.Ordinal)).Decoded["mac"]);
    }

    [Fact]
    public void TheGuestMacEditLocatesTheKernelWithTheKernelOptions()
    {
        // edit --guest finds the kernel as every other command does: the --system-map given is opened and checked.
        string output = Path.Combine(snap.Dir, $"guest-mac-{Guid.NewGuid():N}.mig");
        string[] edit = ["edit", snap.Original, "-o", output, "--set-mac", "e1000=52:54:00:be:ef:03", "--guest"];
        string missing = Path.Combine(snap.Dir, "no-such-System.map");
        (int code, _, string stderr) = VmStateCli.Run([.. edit, "--system-map", missing]);
        Assert.Equal(2, code);
        Assert.Contains(missing, stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(output));

        // A System.map of this kernel (runtime addresses moved back to link addresses) is used; one shifted by
        // 2 MiB is another kernel's and is refused.
        string map = Path.Combine(snap.Dir, $"System.map-{Guid.NewGuid():N}");
        using (Vm vm = Vm.Open(snap.Original))
        {
            Linux.LinuxKernel k = vm.Linux.Kernel;
            var lines = new List<string>();
            for (int i = 0; i < k.Symbols.Count; i++)
            {
                Linux.KernelSymbol sym = k.Symbols[i];
                ulong link = sym.Address >= 0xffff800000000000UL ? sym.Address - (ulong)k.KaslrOffset : sym.Address;
                lines.Add(string.Create(CultureInfo.InvariantCulture, $"{link:x16} {sym.Type} {sym.Name}"));
            }

            File.WriteAllLines(map, lines);
        }

        (code, _, stderr) = VmStateCli.Run([.. edit, "--system-map", map]);
        Assert.True(code == 0, stderr);
        Assert.True(File.Exists(output));
        File.Delete(output);

        File.WriteAllLines(map, File.ReadAllLines(map).Select(l => string.Create(CultureInfo.InvariantCulture, $"{ulong.Parse(l[..16], NumberStyles.HexNumber, CultureInfo.InvariantCulture) + (l.Contains(" _text", StringComparison.Ordinal) ? 0 : 0x200000UL):x16}{l[16..]}")));
        (code, _, stderr) = VmStateCli.Run([.. edit, "--system-map", map]);
        Assert.Equal(2, code);
        Assert.Contains("does not match this kernel", stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void RegisterEditsChangeOnlyThatRegister()
    {
        string edited = Path.Combine(snap.Dir, "regs.mig");
        (int code, _, string stderr) = VmStateCli.Run(["edit", snap.Original, "-o", edited, "--set-reg", "1:r15=0xfeedface", "--set-reg", "rax=42"]);
        Assert.True(code == 0, stderr);
        using MachineState before = SnapshotLoader.Open(snap.Original);
        using MachineState after = SnapshotLoader.Open(edited);
        Assert.Equal(0xfeedfaceUL, after.Cpus[1].Regs[15]);
        Assert.Equal(42UL, after.Cpus[0].Regs[0]);
        Assert.Equal(before.Cpus[0].Regs[1..], after.Cpus[0].Regs[1..]);
        Assert.Equal(before.Cpus[1].Rip, after.Cpus[1].Rip);
    }

    [Theory]
    [InlineData("--write-pa", "0x7fffffff000=00", "not RAM")]
    [InlineData("--set-reg", "9:rax=1", "no vCPU 9")]
    [InlineData("--set-reg", "0:xyz=1", "unknown register")]
    [InlineData("--set-field", "e1000:no_such_field=1", "has no field")]
    [InlineData("--set-field", "e1000:mac_reg[RCTL]=0x1ffffffff", "does not fit")]
    [InlineData("--set-mac", "serial=52:54:00:00:00:01", "not an e1000 or virtio-net")]
    [InlineData("--write-va", "0x1000=00", "not mapped")]
    public void BadEditsFailBeforeAnythingIsWritten(string option, string value, string message)
    {
        string output = Path.Combine(snap.Dir, $"bad-{Guid.NewGuid():N}.mig");
        (int code, _, string stderr) = VmStateCli.Run(["edit", snap.Original, "-o", output, option, value]);
        Assert.Equal(2, code);
        Assert.Contains(message, stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(output));
        Assert.Empty(Directory.GetFiles(snap.Dir, ".*.tmp"));
    }
}
