using System.Diagnostics;
using System.Text.RegularExpressions;
using VmState.Integration.Harness;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;

namespace VmState.Integration;

/// <summary>The whole edit workflow through gdb alone: connect, change memory and a register, save, resume.</summary>
public sealed partial class GdbServerTests(RunningGuestSnapshot snap) : IClassFixture<RunningGuestSnapshot>
{
    [Fact]
    public async Task AGdbScriptEditsTheSnapshotAndTheResumedGuestShowsIt()
    {
        const ulong NewValue = 0x5151515151515151;
        // The register edit is checked in one save; the guest resumes from a second save with the register put back,
        // because any register of a vCPU stopped at a random instant may be live kernel state (r14 once was, in
        // __run_timers, and the resumed guest panicked).
        string saved = Path.Combine(snap.Dir, "from-gdb.mig");
        string resumable = Path.Combine(snap.Dir, "from-gdb-resumable.mig");
        ulong gValue = snap.Truth.Marker!.GValuePhysicalAddress;
        string dll = Path.Combine(AppContext.BaseDirectory, "vmstate.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { dll, "gdbserver", snap.Original, "--port", "0", "--once", "--save-dir", snap.Dir })
        {
            psi.ArgumentList.Add(a);
        }

        using Process server = Process.Start(psi)!;
        try
        {
            string banner = await server.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60)) ?? string.Empty;
            Match port = Port().Match(banner);
            Assert.True(port.Success, $"no port in \"{banner}\"");
            using MachineState original = SnapshotLoader.Open(snap.Original);
            ulong r14 = original.Cpus[1].Regs[14];
            (int code, string output) = GdbBatch.Run(string.Empty,
                $"target remote 127.0.0.1:{port.Groups[1].Value}",
                "info threads",
                "info registers rip rsp cr3",
                "monitor phys on",
                $"set {{unsigned long}}0x{gValue:x} = 0x{NewValue:x}",
                $"x/1gx 0x{gValue:x}",
                "thread 2",
                "set $r14 = 0xabcdef",
                $"monitor save {Path.GetFileName(saved)}",
                $"set $r14 = 0x{r14:x}",
                $"monitor save {Path.GetFileName(resumable)}",
                "detach");
            Assert.True(code == 0, output);
            Assert.Contains($"rip            0x{original.Cpus[0].Rip:x}", output, StringComparison.Ordinal);
            Assert.Contains($"cr3            0x{original.Cpus[0].Cr3:x}", output, StringComparison.Ordinal);
            Assert.Contains($"0x{NewValue:x16}", output, StringComparison.Ordinal);
            Assert.Contains("saved ", output, StringComparison.Ordinal);
            Assert.True(server.WaitForExit(30_000), "gdbserver did not exit after the connection ended");

            using (MachineState m = SnapshotLoader.Open(saved))
            {
                Assert.Equal(0xabcdefUL, m.Cpus[1].Regs[14]);
                Assert.Equal(original.Cpus[0].Regs, m.Cpus[0].Regs);
            }

            using (MachineState m = SnapshotLoader.Open(resumable))
            {
                Assert.Equal(original.Cpus[1].Regs, m.Cpus[1].Regs);
            }

            await using QemuGuest guest = await QemuGuest.StartAsync(new QemuGuestOptions { Incoming = resumable });
            while (await VmState.Live.QemuMonitor.QueryStatusAsync(guest.Qmp) is "inmigrate")
            {
                await Task.Delay(50);
            }

            await guest.ResumeAsync();
            await guest.WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER tick=", StringComparison.Ordinal) && l.EndsWith($"value=0x{NewValue:x16}", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        }
        finally
        {
            if (!server.HasExited)
            {
                server.Kill(true);
            }
        }
    }

    [Fact]
    public void ASnapshotTruncatedUnderTheServerFailsThatReadAndTheSessionGoesOn()
    {
        // Regressions: a snapshot truncated while served killed the server with SIGBUS (it was memory-mapped), and
        // `monitor save` wrote any path, replacing the served snapshot or an existing file.
        string dir = Path.Combine(snap.Dir, $"trunc-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        string copy = Path.Combine(dir, "served.mig");
        File.Copy(snap.Original, copy);
        ulong gValue = snap.Truth.Marker!.GValuePhysicalAddress;
        IReadOnlyList<ulong> probes = PagesFarApartInTheStream(copy);
        string dll = Path.Combine(AppContext.BaseDirectory, "vmstate.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { dll, "gdbserver", copy, "--port", "0", "--once", "--save-dir", dir })
        {
            psi.ArgumentList.Add(a);
        }

        using Process server = Process.Start(psi)!;
        try
        {
            string banner = server.StandardOutput.ReadLine() ?? string.Empty;
            Match port = Port().Match(banner);
            Assert.True(port.Success, $"no port in \"{banner}\"");
            // gdb runs its commands one by one; the truncation happens between two of them through gdb's own shell.
            string[] commands =
            [
                $"target remote 127.0.0.1:{port.Groups[1].Value}",
                "monitor phys on",
                $"x/1gx 0x{gValue:x}",
                $"shell truncate -s 4096 {copy}",
                "monitor phys on",
                "maintenance flush dcache",
                .. probes.Select(a => $"x/1gx 0x{a:x}"),
                "info registers rip",
                "monitor save served.mig",
                "monitor save ../escape.mig",
                "monitor save /etc/vmstate-test.mig",
                "detach",
            ];
            (int code, string output) = GdbBatch.Run(string.Empty, commands);
            Assert.True(code == 0, output);
            Assert.Contains($"0x{gValue:x}:", output, StringComparison.Ordinal);
            Assert.Contains("Cannot access memory", output, StringComparison.Ordinal);
            Assert.Contains("rip ", output, StringComparison.Ordinal);
            Assert.True(server.WaitForExit(30_000), "gdbserver did not exit after the connection ended");
            string log = server.StandardError.ReadToEnd();
            Assert.Equal(0, server.ExitCode);
            Assert.Contains("changed while being read", log, StringComparison.Ordinal);
            Assert.Equal(4096, new FileInfo(copy).Length);
            Assert.False(File.Exists(Path.Combine(snap.Dir, "escape.mig")));
            Assert.False(File.Exists("/etc/vmstate-test.mig"));
            Assert.Equal([copy], Directory.GetFileSystemEntries(dir));
        }
        finally
        {
            if (!server.HasExited)
            {
                server.Kill(true);
            }

            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// Eight non-zero RAM pages, from the top down, with 64 non-zero pages between each two. The server reads through a
    /// cache of 64 KiB file blocks, so a page in a block already read (next to a page read before the truncation, or
    /// during start-up) is still served; the stream holds non-zero pages in address order, 4 KiB each, so pages this
    /// far apart lie in different blocks and at least one of them was never read before the file shrank.
    /// </summary>
    private static List<ulong> PagesFarApartInTheStream(string path)
    {
        const ulong Page = 4096;
        using Vm vm = Vm.Open(path);
        Assert.True(vm.TryGet(out ISparseMemory? sparse));
        var picked = new List<ulong>();
        int sinceLast = 64;
        foreach (MemoryRange range in vm.Machine.Memory.Ranges.Reverse())
        {
            for (ulong a = range.End - Page; a >= range.Start && a < range.End && picked.Count < 8; a -= Page)
            {
                if (!sparse.IsZero(a, Page) && ++sinceLast > 64)
                {
                    picked.Add(a);
                    sinceLast = 0;
                }
            }
        }

        Assert.Equal(8, picked.Count);
        return picked;
    }

    [GeneratedRegex(@"127\.0\.0\.1:(\d+)")]
    private static partial Regex Port();
}
