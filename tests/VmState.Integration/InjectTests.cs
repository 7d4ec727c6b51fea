using System.Buffers.Binary;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using VmState.Integration.Harness;
using VmState.Machine;
using VmState.Snapshots;

namespace VmState.Integration;

/// <summary>extract → edit core.elf and hardware.json → inject → the resumed guest carries exactly those edits.</summary>
public sealed class InjectTests(RunningGuestSnapshot snap) : IClassFixture<RunningGuestSnapshot>
{
    /// <summary>The file offset of guest-physical <paramref name="pa"/> in an ELF core (PT_LOADs with p_vaddr = p_paddr).</summary>
    internal static long FileOffsetOf(byte[] core, ulong pa)
    {
        long phoff = (long)BinaryPrimitives.ReadUInt64LittleEndian(core.AsSpan(32));
        long phnum = BinaryPrimitives.ReadUInt16LittleEndian(core.AsSpan(56));
        if (phnum == 0xFFFF)
        {
            long shoff = (long)BinaryPrimitives.ReadUInt64LittleEndian(core.AsSpan(40));
            phnum = BinaryPrimitives.ReadUInt32LittleEndian(core.AsSpan((int)shoff + 44));
        }

        for (long i = 0; i < phnum; i++)
        {
            ReadOnlySpan<byte> p = core.AsSpan((int)(phoff + (i * 56)), 56);
            ulong off = BinaryPrimitives.ReadUInt64LittleEndian(p[8..]);
            ulong vaddr = BinaryPrimitives.ReadUInt64LittleEndian(p[16..]);
            ulong paddr = BinaryPrimitives.ReadUInt64LittleEndian(p[24..]);
            ulong size = BinaryPrimitives.ReadUInt64LittleEndian(p[32..]);
            if (BinaryPrimitives.ReadUInt32LittleEndian(p) == 1 && vaddr == paddr && pa >= paddr && pa < paddr + size)
            {
                return (long)(off + (pa - paddr));
            }
        }

        throw new InvalidOperationException($"0x{pa:x} is in no PT_LOAD");
    }

    [Fact]
    public async Task EditsToTheExtractedFilesReachTheResumedGuestAndNothingElseChanges()
    {
        string dir = Path.Combine(snap.Dir, "inject");
        (int code, _, string stderr) = VmStateCli.Run(["extract", snap.Original, "-o", dir]);
        Assert.True(code == 0, stderr);

        // Software state: the marker process's g_value, in the core's bytes.
        const ulong NewValue = 0x00c0ffee00c0ffee;
        string corePath = Path.Combine(dir, "core.elf");
        byte[] core = File.ReadAllBytes(corePath);
        BinaryPrimitives.WriteUInt64LittleEndian(core.AsSpan((int)FileOffsetOf(core, snap.Truth.Marker!.GValuePhysicalAddress)), NewValue);
        File.WriteAllBytes(corePath, core);

        // Hardware state: the serial port's scratch register, in hardware.json.
        string hwPath = Path.Combine(dir, "hardware.json");
        JsonNode hw = JsonNode.Parse(File.ReadAllText(hwPath))!;
        JsonNode serial = hw["devices"]!.AsArray().First(d => d!["id"]!.GetValue<string>() == "serial")!;
        JsonNode scr = serial["fields"]![0]!["value"]!["fields"]!.AsArray().First(f => f!["name"]!.GetValue<string>() == "scr")!;
        scr["value"] = 0x5a;
        File.WriteAllText(hwPath, hw.ToJsonString());

        string injected = Path.Combine(snap.Dir, "injected.mig");
        (code, string stdout, stderr) = VmStateCli.Run(["inject", snap.Original, "--core", corePath, "--hardware", hwPath, "-o", injected, "--json"]);
        Assert.True(code == 0, stderr);
        using (JsonDocument summary = JsonDocument.Parse(stdout))
        {
            Assert.Equal(1, summary.RootElement.GetProperty("pagesChanged").GetInt32());
            Assert.Equal(0, summary.RootElement.GetProperty("registersChanged").GetInt32());
            Assert.Equal(1, summary.RootElement.GetProperty("fieldsChanged").GetInt32());
        }

        using (MachineState before = SnapshotLoader.Open(snap.Original))
        using (MachineState after = SnapshotLoader.Open(injected))
        {
            Assert.Equal(before.Cpus[0].Regs, after.Cpus[0].Regs);
            Assert.Equal(before.Cpus[1].Regs, after.Cpus[1].Regs);
            Assert.Equal(0x5aUL, DeviceFieldSearch.FindByName(after.FindDevice("serial")!.State!, "scr")!.Integer);
            Assert.Equal(
                before.Devices.Where(d => d.IdStr != "serial" && d.IdStr != "cpu").Select(d => d.Length),
                after.Devices.Where(d => d.IdStr != "serial" && d.IdStr != "cpu").Select(d => d.Length));
        }

        await using QemuGuest guest = await QemuGuest.StartAsync(new QemuGuestOptions { Incoming = injected });
        while (await VmState.Live.QemuMonitor.QueryStatusAsync(guest.Qmp) is "inmigrate")
        {
            await Task.Delay(50);
        }

        await guest.ResumeAsync();
        await guest.WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER tick=", StringComparison.Ordinal) && l.EndsWith($"value=0x{NewValue:x16}", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        string tick = await guest.WaitForSerialLineAsync(l => l.StartsWith("VMSTATE-TICK ", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        Assert.True(int.Parse(tick["VMSTATE-TICK ".Length..], CultureInfo.InvariantCulture) > snap.LastTickBefore);
    }

    [Fact]
    public void RegisterEditsInTheHardwareFileAndTheCoreNotesAreCarried()
    {
        string dir = Path.Combine(snap.Dir, "inject-regs");
        (int code, _, string stderr) = VmStateCli.Run(["extract", snap.Original, "-o", dir]);
        Assert.True(code == 0, stderr);
        string hwPath = Path.Combine(dir, "hardware.json");
        JsonNode hw = JsonNode.Parse(File.ReadAllText(hwPath))!;
        hw["cpus"]![1]!["registers"]!["r15"] = "0x1234abcd";
        File.WriteAllText(hwPath, hw.ToJsonString());

        // rax of vCPU 0 in the core's NT_PRSTATUS (user_regs_struct slot 10).
        string corePath = Path.Combine(dir, "core.elf");
        byte[] core = File.ReadAllBytes(corePath);
        long phoff = (long)BinaryPrimitives.ReadUInt64LittleEndian(core.AsSpan(32));
        long notes = (long)BinaryPrimitives.ReadUInt64LittleEndian(core.AsSpan((int)phoff + 8));
        Assert.Equal("CORE", System.Text.Encoding.ASCII.GetString(core, (int)notes + 12, 4));
        BinaryPrimitives.WriteUInt64LittleEndian(core.AsSpan((int)notes + 20 + 112 + (10 * 8)), 0x77);
        File.WriteAllBytes(corePath, core);

        string injected = Path.Combine(snap.Dir, "injected-regs.mig");
        (code, _, stderr) = VmStateCli.Run(["inject", snap.Original, "--core", corePath, "--hardware", hwPath, "-o", injected]);
        Assert.True(code == 0, stderr);
        using MachineState before = SnapshotLoader.Open(snap.Original);
        using MachineState after = SnapshotLoader.Open(injected);
        Assert.Equal(0x1234abcdUL, after.Cpus[1].Regs[15]);
        Assert.Equal(0x77UL, after.Cpus[0].Regs[0]);
        Assert.Equal(before.Cpus[0].Regs[1..], after.Cpus[0].Regs[1..]);
        Assert.Equal(before.Cpus[1].Regs[..15], after.Cpus[1].Regs[..15]);
    }

    [Fact]
    public void AFileThatIsNotAHardwareFileIsRefused()
    {
        string dir = Path.Combine(snap.Dir, "inject-bad");
        Directory.CreateDirectory(dir);
        string hw = Path.Combine(dir, "hardware.json");
        File.WriteAllText(hw, "{\"format\": \"something-else\"}");
        (int code, _, string stderr) = VmStateCli.Run(["inject", snap.Original, "--hardware", hw, "-o", Path.Combine(dir, "x.mig")]);
        Assert.Equal(2, code);
        Assert.Contains("not a vmstate hardware file", stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(dir, "x.mig")));
    }
}
