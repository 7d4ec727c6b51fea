using System.Diagnostics;
using System.Globalization;
using System.Text;
using VmState.Integration.Harness;
using VmState.Mount;

namespace VmState.Integration;

/// <summary>
/// <c>vmstate mount</c> of the fixture guest's snapshot through a real FUSE mount: what plain tools (cat, dd-style
/// pread, python's mmap) read from it is what the guest said of itself and what the other commands print; bad mount
/// points are refused; Ctrl-C and <c>vmstate umount</c> leave no mount behind.
/// </summary>
public sealed class MountTests(DefaultLinuxGuest guest) : IClassFixture<DefaultLinuxGuest>, IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-mount-it-").FullName;

    public void Dispose()
    {
        foreach (string d in Directory.GetDirectories(_dir))
        {
            if (MountPointCheck.IsMountPoint(d))
            {
                MountPointCheck.Unmount(d, lazy: true, out _);
            }
        }

        Directory.Delete(_dir, recursive: true);
    }

    private static Process StartMount(string snapshot, string mountPoint)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "vmstate.dll"));
        foreach (string a in (string[])["mount", snapshot, mountPoint, "--no-cache"])
        {
            psi.ArgumentList.Add(a);
        }

        return Process.Start(psi)!;
    }

    /// <summary>Starts a mount and waits for its "mounted" line (the mount is served from then on).</summary>
    private static async Task<Process> MountAsync(string snapshot, string mountPoint)
    {
        Process p = StartMount(snapshot, mountPoint);
        string? line = await p.StandardError.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(120));
        Assert.True(line is not null && line.StartsWith("mounted ", StringComparison.Ordinal), $"vmstate mount said: {line}");
        Assert.Equal(MountPointCheck.VmStateType, MountPointCheck.FileSystemType(mountPoint));
        return p;
    }

    private static async Task InterruptAsync(Process p)
    {
        using (Process kill = Process.Start("kill", ["-INT", p.Id.ToString(CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
        }

        await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
    }

    private string MountPoint(string name)
    {
        string path = Path.Combine(_dir, name);
        Directory.CreateDirectory(path);
        return path;
    }

    [Fact]
    public async Task PlainToolsReadTheGuestsTruthFromTheMount()
    {
        string mnt = MountPoint("m");
        using Process mount = await MountAsync(guest.Path("mig"), mnt);
        GroundTruth.MarkerInfo marker = guest.Truth.Marker!;
        string proc = Path.Combine(mnt, "proc", marker.Pid.ToString(CultureInfo.InvariantCulture));

        // The process list is the guest's, and linux/ps is what `vmstate ps` prints.
        var pids = Directory.GetDirectories(Path.Combine(mnt, "proc")).Select(d => int.Parse(Path.GetFileName(d), CultureInfo.InvariantCulture)).ToHashSet();
        Assert.Superset(guest.Truth.Processes.Select(p => p.Pid).ToHashSet(), pids);
        (int code, string ps, string stderr) = VmStateCli.Run(["ps", guest.Path("mig"), "--no-cache"]);
        Assert.True(code == 0, stderr);
        Assert.Equal(ps, await File.ReadAllTextAsync(Path.Combine(mnt, "linux", "ps")));
        (code, string maps, stderr) = VmStateCli.Run(["maps", guest.Path("mig"), marker.Pid.ToString(CultureInfo.InvariantCulture), "--no-cache"]);
        Assert.True(code == 0, stderr);
        Assert.Equal(maps, await File.ReadAllTextAsync(Path.Combine(proc, "maps")));

        // cmdline as /proc gives it: NUL-separated, ending in NUL.
        byte[] cmdline = await File.ReadAllBytesAsync(Path.Combine(proc, "cmdline"));
        Assert.Equal("/bin/vmsmarker\0--info\0/run/vmsmarker.info\0", Encoding.UTF8.GetString(cmdline));
        Assert.Equal("vmsmarker\n", await File.ReadAllTextAsync(Path.Combine(proc, "comm")));

        // proc/PID/mem at the marker's virtual address, and machine/physmem at its physical address (pread).
        byte[] want = Encoding.ASCII.GetBytes(marker.Value);
        Assert.Equal(want, PRead(Path.Combine(proc, "mem"), (long)marker.VirtualAddress, want.Length));
        Assert.Equal(want, PRead(Path.Combine(mnt, "machine", "physmem"), (long)marker.PhysicalAddress, want.Length));

        // An unmapped virtual address is an I/O error, as in /proc/PID/mem.
        Assert.Throws<IOException>(() => PRead(Path.Combine(proc, "mem"), 0x1000, 16));

        // python's mmap of physmem reads the same bytes (the file is mmap-able: page cache, not direct I/O).
        HostCommand.Result py = HostCommand.Run("python3", ["-c", $"import mmap,sys; f=open(sys.argv[1],'rb'); m=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ); sys.stdout.write(m[{marker.PhysicalAddress}:{marker.PhysicalAddress + (ulong)want.Length}].decode())", Path.Combine(mnt, "machine", "physmem")], _dir, TimeSpan.FromSeconds(60));
        Assert.True(py.ExitCode == 0, py.ToString());
        Assert.Equal(marker.Value, py.Stdout);

        // The kernel's symbols: as many as the guest's /proc/kallsyms had.
        Assert.Equal(guest.Truth.KallsymsCount, File.ReadLines(Path.Combine(mnt, "linux", "kallsyms")).Count());
        Assert.Contains($"] {guest.Truth.DmesgMarker}\n", await File.ReadAllTextAsync(Path.Combine(mnt, "linux", "dmesg")), StringComparison.Ordinal);

        // Readers at once, each of a different file made from kernel data on first read (maps and cmdline of every
        // process, read first all together, then again one by one), get the same bytes as `vmstate maps` and alone.
        string[] files = [.. Directory.GetDirectories(Path.Combine(mnt, "proc")).SelectMany(d => new[] { Path.Combine(d, "maps"), Path.Combine(d, "cmdline") })];
        byte[][] together = await Task.WhenAll(files.Select(f => Task.Run(() => File.ReadAllBytes(f))));
        byte[][] alone = [.. files.Select(File.ReadAllBytes)];
        Assert.Equal(alone, together);
        Assert.Contains(together, b => b.Length > 0);
        byte[][] mems = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() => PRead(Path.Combine(proc, "mem"), (long)marker.VirtualAddress, want.Length))));
        Assert.All(mems, m => Assert.Equal(want, m));

        // Read-only: writing is refused.
        Assert.ThrowsAny<Exception>(() => File.WriteAllText(Path.Combine(proc, "comm"), "x"));

        await InterruptAsync(mount);
        Assert.Equal(0, mount.ExitCode);
        Assert.False(MountPointCheck.IsMountPoint(mnt));
    }

    [Fact]
    public async Task UmountEndsTheMountAndBadMountPointsAreRefused()
    {
        string mnt = MountPoint("u");
        using Process mount = await MountAsync(guest.Path("mig"), mnt);

        // Busy: a second mount on it is refused with a clear message.
        (int code, _, string stderr) = VmStateCli.Run(["mount", guest.Path("mig"), mnt, "--no-cache"]);
        Assert.Equal(1, code);
        Assert.Contains("is already a mount point (fuse.vmstate)", stderr, StringComparison.Ordinal);

        (code, _, stderr) = VmStateCli.Run(["umount", mnt]);
        Assert.True(code == 0, stderr);
        await mount.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(0, mount.ExitCode);
        Assert.False(MountPointCheck.IsMountPoint(mnt));

        // A mount whose process is killed stays as a dead mount: said so, and `vmstate umount` removes it.
        using (Process killed = await MountAsync(guest.Path("mig"), mnt))
        {
            killed.Kill(entireProcessTree: false);
            await killed.WaitForExitAsync();
        }

        (code, _, stderr) = VmStateCli.Run(["mount", guest.Path("mig"), mnt, "--no-cache"]);
        Assert.Equal(1, code);
        Assert.Contains("whose process is gone", stderr, StringComparison.Ordinal);
        (code, _, stderr) = VmStateCli.Run(["umount", mnt]);
        Assert.True(code == 0, stderr);
        Assert.False(MountPointCheck.IsMountPoint(mnt));

        (code, _, stderr) = VmStateCli.Run(["mount", guest.Path("mig"), Path.Combine(_dir, "missing"), "--no-cache"]);
        Assert.Equal(1, code);
        Assert.Contains("does not exist", stderr, StringComparison.Ordinal);
        (code, _, stderr) = VmStateCli.Run(["umount", mnt]);
        Assert.Equal(1, code);
        Assert.Contains("is not a mount point", stderr, StringComparison.Ordinal);
    }

    private static byte[] PRead(string path, long offset, int count)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.None);
        f.Position = offset;
        byte[] b = new byte[count];
        int n = f.Read(b);
        return b[..n];
    }
}
