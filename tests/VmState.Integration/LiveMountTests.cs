using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using VmState.Integration.Harness;
using VmState.Live;
using VmState.Mount;

namespace VmState.Integration;

/// <summary>
/// <c>vmstate mount --qmp</c> over a running fixture guest: plain tools read the guest's truth, listings and files
/// follow the running guest, writes through <c>--rw</c> reach it (the guest prints the new value), and the guest keeps
/// running on every way the mount ends (umount, Ctrl-C, the mount process killed).
/// </summary>
public sealed class LiveMountTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-livemount-it-").FullName;
    private QemuGuest _guest = null!;

    public async Task InitializeAsync()
    {
        _guest = await QemuGuest.StartAsync(new QemuGuestOptions { MemoryMiB = 256 });
        await _guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
    }

    public async Task DisposeAsync()
    {
        foreach (string d in Directory.GetDirectories(_dir))
        {
            if (MountPointCheck.IsMountPoint(d))
            {
                MountPointCheck.Unmount(d, lazy: true, out _);
            }
        }

        await _guest.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private string MountPoint(string name)
    {
        string path = Path.Combine(_dir, name);
        Directory.CreateDirectory(path);
        return path;
    }

    private async Task AssertRunningAsync() => Assert.Equal("running", await _guest.Qmp.QueryStatusAsync());

    [Fact]
    public async Task ALiveMountFollowsTheRunningGuestAndItsWritesReachIt()
    {
        string mnt = MountPoint("m");
        using Process mount = await MountTests.MountAsync(["--qmp", _guest.ToolQmpPath, mnt, "--rw"], mnt);
        GroundTruth.MarkerInfo marker = _guest.Truth.Marker!;
        string proc = Path.Combine(mnt, "proc", marker.Pid.ToString(CultureInfo.InvariantCulture));
        await AssertRunningAsync();

        // The guest's truth, through plain file reads: processes, cmdline, the marker in its memory and in physmem.
        var pids = Directory.GetDirectories(Path.Combine(mnt, "proc")).Select(d => int.Parse(Path.GetFileName(d), CultureInfo.InvariantCulture)).ToHashSet();
        // Every user process the guest listed (none is started after READY) is there; kernel workers come and go.
        Assert.Subset(pids, _guest.Truth.Processes.Where(p => p.Pid > 2 && p.Ppid != 2).Select(p => p.Pid).ToHashSet());
        Assert.Contains(marker.Pid, pids);
        Assert.Equal("/bin/vmsmarker\0--info\0/run/vmsmarker.info\0", await File.ReadAllTextAsync(Path.Combine(proc, "cmdline")));
        byte[] want = Encoding.ASCII.GetBytes(marker.Value);
        Assert.Equal(want, MountTests.PRead(Path.Combine(proc, "mem"), (long)marker.VirtualAddress, want.Length));
        Assert.Equal(want, MountTests.PRead(Path.Combine(mnt, "machine", "physmem"), (long)marker.PhysicalAddress, want.Length));
        HostCommand.Result py = HostCommand.Run("python3", ["-c", $"import mmap,sys; f=open(sys.argv[1],'rb'); m=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ); sys.stdout.write(m[{marker.PhysicalAddress}:{marker.PhysicalAddress + (ulong)want.Length}].decode())", Path.Combine(mnt, "machine", "physmem")], _dir, TimeSpan.FromSeconds(60));
        Assert.True(py.ExitCode == 0, py.ToString());
        Assert.Equal(marker.Value, py.Stdout);
        Assert.Equal(_guest.Truth.KallsymsCount, File.ReadLines(Path.Combine(mnt, "linux", "kallsyms")).Count());

        // Eight readers at once, of different files, get what one reader alone gets.
        string[] files = [.. Directory.GetDirectories(Path.Combine(mnt, "proc")).Take(8).Select(d => Path.Combine(d, "status"))];
        string[] together = await Task.WhenAll(files.Select(f => Task.Run(() => File.ReadAllText(f))));
        Assert.Equal(files.Select(File.ReadAllText), together);
        byte[][] mems = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() => MountTests.PRead(Path.Combine(proc, "mem"), (long)marker.VirtualAddress, want.Length))));
        Assert.All(mems, m => Assert.Equal(want, m));

        // The view follows the guest: a kernel log line the guest prints after this read is in a later read.
        int tick = Regex.Matches(await File.ReadAllTextAsync(Path.Combine(mnt, "linux", "dmesg")), @"VMSTATE-KTICK (\d+)").Select(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).Max();
        await _guest.WaitForSerialLineAsync(l => l == $"VMSTATE-TICK {tick + 2}", TimeSpan.FromSeconds(60));
        await Task.Delay(VmMountOptions.DefaultLiveRefresh + TimeSpan.FromMilliseconds(100));
        Assert.Contains($"VMSTATE-KTICK {tick + 2}\n", await File.ReadAllTextAsync(Path.Combine(mnt, "linux", "dmesg")), StringComparison.Ordinal);

        // gdb opens the core streamed from the running guest.
        HostCommand.Result gdb = HostCommand.Run("gdb", ["-nx", "-batch", "-c", Path.Combine(mnt, "machine", "core.elf"), "-ex", "info registers rip"], _dir, TimeSpan.FromSeconds(120));
        Assert.True(gdb.ExitCode == 0, gdb.ToString());
        Assert.Matches(@"rip\s+0x[0-9a-f]+", gdb.Stdout);

        // --rw: a write of g_value through the process's memory, then one through physmem; the guest prints each.
        int line = _guest.SerialLineCount;
        MountTests.PWrite(Path.Combine(proc, "mem"), (long)marker.GValueVirtualAddress, BitConverter.GetBytes(0x1357_9bdf_2468_ace0UL));
        await _guest.WaitForSerialLineAsync(l => l.EndsWith("value=0x13579bdf2468ace0", StringComparison.Ordinal), TimeSpan.FromSeconds(30), line);
        line = _guest.SerialLineCount;
        MountTests.PWrite(Path.Combine(mnt, "machine", "physmem"), (long)marker.GValuePhysicalAddress, BitConverter.GetBytes(0x0fed_cba9_8765_4321UL));
        await _guest.WaitForSerialLineAsync(l => l.EndsWith("value=0x0fedcba987654321", StringComparison.Ordinal), TimeSpan.FromSeconds(30), line);
        Assert.Throws<IOException>(() => MountTests.PWrite(Path.Combine(proc, "mem"), 0x1000, [1])); // not mapped

        await AssertRunningAsync();
        (int code, _, string stderr) = VmStateCli.Run(["umount", mnt]);
        Assert.True(code == 0, stderr);
        await mount.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(0, mount.ExitCode);
        Assert.False(MountPointCheck.IsMountPoint(mnt));
        await AssertRunningAsync();
    }

    [Fact]
    public async Task TheGuestKeepsRunningWhenTheMountIsKilledOrInterrupted()
    {
        string mnt = MountPoint("k");
        (int code, _, string stderr) = VmStateCli.Run(["mount", "--qmp", _guest.ToolQmpPath, mnt, "--pause"]);
        Assert.Equal(2, code);
        Assert.Contains("keeps running", stderr, StringComparison.Ordinal);
        (code, _, stderr) = VmStateCli.Run(["mount", "--qmp", _guest.ToolQmpPath, mnt, "--rw", "-o", Path.Combine(_dir, "x.mig")]);
        Assert.Equal(2, code);

        // Killed while a reader is at work: the guest runs on, the dead mount is said so and removed by umount.
        using (Process killed = await MountTests.MountAsync(["--qmp", _guest.ToolQmpPath, mnt], mnt))
        {
            Assert.NotEmpty(await File.ReadAllTextAsync(Path.Combine(mnt, "linux", "ps")));
            killed.Kill(entireProcessTree: false);
            await killed.WaitForExitAsync();
        }

        await AssertRunningAsync();
        (code, _, stderr) = VmStateCli.Run(["umount", mnt]);
        Assert.True(code == 0, stderr);

        // Ctrl-C: unmounted, exit 0, the guest running; its QMP socket serves the next client.
        using (Process interrupted = await MountTests.MountAsync(["--qmp", _guest.ToolQmpPath, mnt], mnt))
        {
            Assert.Contains("vmsmarker", await File.ReadAllTextAsync(Path.Combine(mnt, "linux", "ps")), StringComparison.Ordinal);
            await MountTests.InterruptAsync(interrupted);
            Assert.Equal(0, interrupted.ExitCode);
        }

        Assert.False(MountPointCheck.IsMountPoint(mnt));
        await AssertRunningAsync();
    }
}
