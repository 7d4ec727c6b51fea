using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
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

    internal static Process StartMount(IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "vmstate.dll"));
        psi.ArgumentList.Add("mount");
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        psi.ArgumentList.Add("--foreground");

        return Process.Start(psi)!;
    }

    /// <summary>Starts a mount and waits for its "mounted" line (the mount is served from then on).</summary>
    private static Task<Process> MountAsync(string snapshot, string mountPoint, params string[] more) =>
        MountAsync([snapshot, mountPoint, "--no-cache", .. more], mountPoint);

    /// <summary>Starts <c>vmstate mount ARGS</c> and waits for its "mounted" line (the mount is served from then on).</summary>
    internal static async Task<Process> MountAsync(string[] args, string mountPoint)
    {
        Process p = StartMount(args);
        string? line = await p.StandardError.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(120));
        Assert.True(line is not null && line.StartsWith("mounted ", StringComparison.Ordinal), $"vmstate mount said: {line}");
        Assert.Equal(MountPointCheck.VmStateType, MountPointCheck.FileSystemType(mountPoint));
        return p;
    }

    internal static async Task InterruptAsync(Process p)
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

    [Fact]
    public async Task WithoutForegroundTheMountGoesOnInTheBackgroundInItsOwnSessionUntilUmount()
    {
        string mnt = MountPoint("bg");
        (int code, _, string stderr) = VmStateCli.Run(["mount", guest.Path("mig"), mnt, "--no-cache"]);
        Assert.True(code == 0, stderr);
        System.Text.RegularExpressions.Match m = System.Text.RegularExpressions.Regex.Match(stderr, @"in the background \(process (\d+)\)");
        Assert.True(m.Success, stderr);
        int pid = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
        try
        {
            // The mount answers after the starting vmstate returned, from a process that leads its own session (no
            // terminal: Ctrl-C or a closed terminal where it was started do not end it).
            Assert.Equal("/bin/vmsmarker\0--info\0/run/vmsmarker.info\0", await File.ReadAllTextAsync(Path.Combine(mnt, "proc", guest.Truth.Marker!.Pid.ToString(CultureInfo.InvariantCulture), "cmdline")));
            string stat = await File.ReadAllTextAsync($"/proc/{pid}/stat");
            string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            Assert.Equal(pid.ToString(CultureInfo.InvariantCulture), fields[3]);   // session id (field 6 of /proc/PID/stat)

            (code, _, stderr) = VmStateCli.Run(["umount", mnt]);
            Assert.True(code == 0, stderr);
            var clock = Stopwatch.StartNew();
            while (Directory.Exists($"/proc/{pid}") && clock.Elapsed < TimeSpan.FromSeconds(30))
            {
                await Task.Delay(50);
            }

            Assert.False(Directory.Exists($"/proc/{pid}"), $"the background mount process {pid} did not end after umount");
            Assert.False(MountPointCheck.IsMountPoint(mnt));
        }
        finally
        {
            if (MountPointCheck.IsMountPoint(mnt))
            {
                VmStateCli.Run(["umount", "--lazy", mnt]);
            }
        }
    }

    [Fact]
    public async Task TheCoreTheBtfTheSymbolsAndTheRegistersAreWhatTheToolsSay()
    {
        string mnt = MountPoint("c");
        string mig = guest.Path("mig");
        using Process mount = await MountAsync(mig, mnt);
        GroundTruth.MarkerInfo marker = guest.Truth.Marker!;
        string pid = marker.Pid.ToString(CultureInfo.InvariantCulture);

        // linux/kallsyms is `vmstate symbols --modules`; System.map has the kernel's own (no module) symbols by address;
        // kernel-info is `vmstate kernel-info`.
        (int code, string symbols, string stderr) = VmStateCli.Run(["symbols", mig, "--modules", "--no-cache"]);
        Assert.True(code == 0, stderr);
        Assert.Equal(symbols, await File.ReadAllTextAsync(Path.Combine(mnt, "linux", "kallsyms")));
        string[] map = await File.ReadAllLinesAsync(Path.Combine(mnt, "linux", "System.map"));
        (code, string banner, stderr) = VmStateCli.Run(["symbols", mig, "linux_banner", "--no-cache"]);
        Assert.True(code == 0, stderr);
        string bannerAddress = banner.Split('\n')[0].Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
        Assert.Contains($"{bannerAddress.PadLeft(16, '0')} D linux_banner", map);
        Assert.Equal(map.OrderBy(l => l[..16], StringComparer.Ordinal), map);
        (code, string info, stderr) = VmStateCli.Run(["kernel-info", mig, "--no-cache"]);
        Assert.True(code == 0, stderr);
        Assert.Equal(info, await File.ReadAllTextAsync(Path.Combine(mnt, "linux", "kernel-info")));

        // bpftool reads the raw BTF: vmlinux's, and a module's split BTF on top of it.
        HostCommand.Result btf = HostCommand.Run("bpftool", ["btf", "dump", "file", Path.Combine(mnt, "linux", "btf", "vmlinux"), "format", "c"], _dir, TimeSpan.FromSeconds(120));
        Assert.True(btf.ExitCode == 0, btf.ToString());
        Assert.Contains("struct task_struct {", btf.Stdout, StringComparison.Ordinal);
        btf = HostCommand.Run("bpftool", ["-B", Path.Combine(mnt, "linux", "btf", "vmlinux"), "btf", "dump", "file", Path.Combine(mnt, "linux", "btf", "e1000"), "format", "c"], _dir, TimeSpan.FromSeconds(120));
        Assert.True(btf.ExitCode == 0, btf.ToString());
        Assert.Contains("struct e1000_adapter {", btf.Stdout, StringComparison.Ordinal);

        // gdb opens machine/core.elf (streamed from the snapshot, never written) and shows vCPU 0's registers, which
        // are those of machine/cpus/0/registers and of hardware.json.
        string regs = await File.ReadAllTextAsync(Path.Combine(mnt, "machine", "cpus", "0", "registers"));
        string rip = regs.Split('\n').First(l => l.StartsWith("rip ", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1];
        using (JsonDocument json = JsonDocument.Parse(await File.ReadAllBytesAsync(Path.Combine(mnt, "machine", "cpus", "0", "registers.json"))))
        {
            Assert.Equal(Convert.ToUInt64(rip, 16), Convert.ToUInt64(json.RootElement.GetProperty("registers").GetProperty("rip").GetString(), 16));
        }

        HostCommand.Result gdb = HostCommand.Run("gdb", ["-nx", "-batch", "-c", Path.Combine(mnt, "machine", "core.elf"), "-ex", "info registers rip"], _dir, TimeSpan.FromSeconds(120));
        Assert.True(gdb.ExitCode == 0, gdb.ToString());
        Assert.Matches($@"rip\s+0x0*{Convert.ToUInt64(rip, 16):x}\b", gdb.Stdout);
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(mnt, "machine", "devices"), "*.json"));
        using (JsonDocument device = JsonDocument.Parse(await File.ReadAllBytesAsync(Directory.GetFiles(Path.Combine(mnt, "machine", "devices"), "*.json")[0])))
        {
            Assert.True(device.RootElement.TryGetProperty("id", out _));
        }

        // proc/PID/core is `vmstate procdump`, byte for byte; the threads' registers are the core's.
        string procdump = Path.Combine(_dir, "marker.core");
        (code, _, stderr) = VmStateCli.Run(["procdump", mig, pid, "-o", procdump, "--no-cache"]);
        Assert.True(code == 0, stderr);
        Assert.Equal(await File.ReadAllBytesAsync(procdump), await File.ReadAllBytesAsync(Path.Combine(mnt, "proc", pid, "core")));
        // proc/PID/exe is the executable as the guest's page cache holds it (the initramfs keeps every page): the
        // marker's is the binary the fixture built, pid 1's the busybox that runs /init; a kernel thread has none.
        Assert.Equal(await File.ReadAllBytesAsync(GuestFixture.Ensure().Values["MARKER_BIN"]), await File.ReadAllBytesAsync(Path.Combine(mnt, "proc", pid, "exe")));
        Assert.Equal(await File.ReadAllBytesAsync("/bin/busybox"), await File.ReadAllBytesAsync(Path.Combine(mnt, "proc", "1", "exe")));
        Assert.False(File.Exists(Path.Combine(mnt, "proc", "2", "exe")));
        string threadRegs = await File.ReadAllTextAsync(Path.Combine(mnt, "proc", pid, "task", pid, "registers"));
        Assert.Matches(@"(?m)^rip\s+0x[0-9a-f]{16}$", threadRegs);

        await InterruptAsync(mount);
        Assert.Equal(0, mount.ExitCode);
    }

    [Fact]
    public async Task SnapshotWritesGoToANewSnapshotAndAHistoryStoreMountsEveryCapture()
    {
        string mnt = MountPoint("w");
        string mig = guest.Path("mig");
        string edited = Path.Combine(_dir, "edited.mig");
        GroundTruth.MarkerInfo marker = guest.Truth.Marker!;
        string pid = marker.Pid.ToString(CultureInfo.InvariantCulture);

        // --rw on a snapshot needs -o, and -o may not be the input.
        (int code, _, string stderr) = VmStateCli.Run(["mount", mig, mnt, "--rw", "--no-cache"]);
        Assert.Equal(2, code);
        Assert.Contains("needs -o NEW", stderr, StringComparison.Ordinal);
        (code, _, stderr) = VmStateCli.Run(["mount", mig, mnt, "--rw", "-o", mig, "--no-cache"]);
        Assert.NotEqual(0, code);
        Assert.False(MountPointCheck.IsMountPoint(mnt));
        byte[] before = await File.ReadAllBytesAsync(mig);

        byte[] value = [0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78];
        using (Process mount = await MountAsync(mig, mnt, "--rw", "-o", edited))
        {
            PWrite(Path.Combine(mnt, "proc", pid, "mem"), (long)marker.GValueVirtualAddress, value);
            Assert.Equal(value, PRead(Path.Combine(mnt, "proc", pid, "mem"), (long)marker.GValueVirtualAddress, 8));
            Assert.Equal(value, PRead(Path.Combine(mnt, "machine", "physmem"), (long)marker.GValuePhysicalAddress, 8));
            Assert.Throws<IOException>(() => PWrite(Path.Combine(mnt, "proc", pid, "mem"), 0x1000, value)); // not mapped
            Assert.ThrowsAny<Exception>(() => File.WriteAllText(Path.Combine(mnt, "linux", "ps"), "x"));
            (code, _, stderr) = VmStateCli.Run(["umount", mnt]);
            Assert.True(code == 0, stderr);
            await mount.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(120));
            string said = await mount.StandardError.ReadToEndAsync();
            Assert.True(mount.ExitCode == 0, said);
            Assert.Contains("1 edited pages: ", said, StringComparison.Ordinal);
        }

        Assert.Equal(before, await File.ReadAllBytesAsync(mig)); // the input is never written
        byte[] saved = new byte[8];
        using (Vm vm = Vm.Open(edited))
        {
            Assert.Equal(8, vm.Machine.Memory.Read(marker.GValuePhysicalAddress, saved));
        }

        Assert.Equal(value, saved);

        // A history store of both: history/1 is the original, history/2 (= latest) the edited one.
        string store = Path.Combine(_dir, "store");
        (code, _, stderr) = VmStateCli.Run(["history", "import", mig, edited, "--store", store]);
        Assert.True(code == 0, stderr);
        string hm = MountPoint("h");
        using (Process mount = await MountAsync([store, hm, "--no-cache"], hm))
        {
            string history = Path.Combine(hm, "history");
            Assert.Equal(["1", "2", "latest"], Directory.GetFileSystemEntries(history).Select(Path.GetFileName).Order(StringComparer.Ordinal));
            Assert.Equal("2", new FileInfo(Path.Combine(history, "latest")).LinkTarget);
            Assert.Equal(value, PRead(Path.Combine(history, "latest", "machine", "physmem"), (long)marker.GValuePhysicalAddress, 8));
            Assert.NotEqual(value, PRead(Path.Combine(history, "1", "machine", "physmem"), (long)marker.GValuePhysicalAddress, 8));
            Assert.Equal("/bin/vmsmarker\0--info\0/run/vmsmarker.info\0", await File.ReadAllTextAsync(Path.Combine(history, "1", "proc", pid, "cmdline")));
            await InterruptAsync(mount);
            Assert.Equal(0, mount.ExitCode);
        }
    }

    internal static void PWrite(string path, long offset, byte[] bytes)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1, FileOptions.None);
        f.Position = offset;
        f.Write(bytes);
    }

    internal static byte[] PRead(string path, long offset, int count)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.None);
        f.Position = offset;
        byte[] b = new byte[count];
        int n = f.Read(b);
        return b[..n];
    }
}
