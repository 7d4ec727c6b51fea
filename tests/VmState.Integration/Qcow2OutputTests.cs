using System.Diagnostics;
using VmState.Editing;
using VmState.Integration.Harness;
using VmState.Live;
using VmState.Machine;
using VmState.Snapshots;

namespace VmState.Integration;

/// <summary>Edits written as a new internal snapshot in a copy of the qcow2 image, resumed with -loadvm.</summary>
public sealed class Qcow2OutputTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-qcow2out-").FullName;
    private GroundTruth _truth = null!;

    private string Disk => Path.Combine(_dir, "disk.qcow2");

    public async Task InitializeAsync()
    {
        Process.Start("qemu-img", ["create", "-q", "-f", "qcow2", Disk, "64M"]).WaitForExit();
        await using QemuGuest guest = await QemuGuest.StartAsync(new QemuGuestOptions { DiskPath = Disk });
        await guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
        await guest.WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER tick=", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        _truth = guest.Truth;
        await guest.SaveVmAsync("base");
        await guest.QuitAsync();
    }

    public Task DisposeAsync()
    {
        Directory.Delete(_dir, recursive: true);
        return Task.CompletedTask;
    }

    private static string QemuImgCheck(string image)
    {
        var psi = new ProcessStartInfo("qemu-img", ["check", image]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using Process p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, output);
        return output;
    }

    [Fact]
    public async Task ANewSnapshotInACopyOfTheImageResumesWithTheEdits()
    {
        const ulong NewValue = 0x3131313131313131;
        const string NewMac = "52:54:00:0a:0b:0c";
        string output = Path.Combine(_dir, "edited.qcow2");
        byte[] originalBytes = File.ReadAllBytes(Disk);
        (int code, _, string stderr) = VmStateCli.Run(
        [
            "edit", Disk, "--snapshot", "base", "-o", output, "--tag", "edited",
            "--set-u64-pa", $"0x{_truth.Marker!.GValuePhysicalAddress:x}=0x{NewValue:x}",
            "--set-mac", $"virtio-net={NewMac}",
        ]);
        Assert.True(code == 0, stderr);
        Assert.Equal(originalBytes, File.ReadAllBytes(Disk));
        Assert.Contains("No errors", QemuImgCheck(output), StringComparison.Ordinal);
        using (MachineState m = SnapshotLoader.Open(output, new SnapshotOpenOptions { Snapshot = "edited" }))
        {
            Assert.Equal(NewMac, m.Devices.Single(d => d.IdStr.EndsWith("/virtio-net", StringComparison.Ordinal)).Decoded["mac"]);
        }

        await using QemuGuest guest = await QemuGuest.StartAsync(new QemuGuestOptions { DiskPath = output, LoadVm = "edited" });
        if (await guest.Qmp.QueryStatusAsync() != "running")
        {
            await guest.ResumeAsync();
        }

        await guest.WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER tick=", StringComparison.Ordinal) && l.EndsWith($"value=0x{NewValue:x16}", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        var filters = await guest.Qmp.ExecuteAsync("query-rx-filter");
        Assert.Contains(filters.EnumerateArray(), f => f.GetProperty("main-mac").GetString() == NewMac);
    }

    [Fact]
    public void InPlaceNeedsTheFlagAndKeepsTheImageConsistent()
    {
        (int code, _, string stderr) = VmStateCli.Run(["edit", Disk, "-o", Disk, "--set-reg", "r12=1"]);
        Assert.NotEqual(0, code);
        Assert.False(string.IsNullOrEmpty(stderr));
        (code, _, stderr) = VmStateCli.Run(["edit", Disk, "-o", Disk, "--in-place", "--tag", "second", "--set-reg", "1:r12=1"]);
        Assert.True(code == 0, stderr);
        QemuImgCheck(Disk);
        using MachineState m = SnapshotLoader.Open(Disk, new SnapshotOpenOptions { Snapshot = "second" });
        Assert.Equal(1UL, m.Cpus[1].Regs[12]);
    }

    [Fact]
    public void AnImageWhoseSnapshotTableEndsTheFileWithoutPaddingIsRead()
    {
        // Regression: qemu-img snapshot -c writes the table at the end of the file and stops right after the last
        // entry's name, without the entry's padding to 8 bytes; the reader wanted the padding ("truncated").
        string image = Path.Combine(_dir, "qemu-img-made.qcow2");
        Process.Start("qemu-img", ["create", "-q", "-f", "qcow2", image, "16M"])!.WaitForExit();
        using (Process p = Process.Start("qemu-img", ["snapshot", "-c", "abc", image])!)
        {
            p.WaitForExit();
            Assert.Equal(0, p.ExitCode);
        }

        Assert.NotEqual(0, new FileInfo(image).Length % 8);
        (int code, string stdout, string stderr) = VmStateCli.Run(["snapshots", image]);
        Assert.True(code == 0, stderr);
        Assert.Contains("abc", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void AQcow2OutputNeedsAQcow2Input()
    {
        string stream = Path.Combine(_dir, "s.mig");
        using (MachineState m = SnapshotLoader.Open(Disk))
        {
            new VmState.Editing.SnapshotEditor(m).Save(stream);
        }

        (int code, _, string stderr) = VmStateCli.Run(["edit", stream, "-o", Path.Combine(_dir, "x.qcow2")]);
        Assert.Equal(2, code);
        Assert.Contains("needs a qcow2 input", stderr, StringComparison.Ordinal);
    }
}
