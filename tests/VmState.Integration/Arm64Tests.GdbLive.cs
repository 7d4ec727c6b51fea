using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using VmState.Integration.Harness;
using VmState.Linux;
using VmState.Live;
using VmState.Machine;
using VmState.Snapshots;

namespace VmState.Integration;

/// <summary>
/// The arm64 guest through gdb (vmstate gdbserver on its snapshot, gdb-multiarch as the client) and attached live
/// over QMP while it runs (registers from HMP and QEMU's gdbstub, memory from QEMU's process).
/// </summary>
public sealed partial class Arm64Tests
{
    [Fact]
    public async Task Gdbserver_serves_the_aarch64_snapshot_to_gdb_multiarch()
    {
        ulong banner;
        ulong ttbr1;
        using (MachineState m = SnapshotLoader.Open(guest.StreamPath, new SnapshotOpenOptions { CacheReads = true }))
        {
            banner = KernelLocator.Locate(m).Symbols.AddressOf("linux_banner");
            ttbr1 = m.Arm64Cpus[0].Ttbr1El1;
        }

        (int readCode, string bytes, string readErr) = VmStateCli.Run(["read", guest.StreamPath, "--sym", "linux_banner", "32", "-f", "raw"]);
        Assert.True(readCode == 0, readErr);
        string bannerText = guest.Truth.Lines.First(l => l.Key == "banner").Text;
        Assert.Equal(bannerText[..32], bytes);

        string dll = Path.Combine(AppContext.BaseDirectory, "vmstate.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        string saveDir = Directory.CreateDirectory(Path.Combine(guest.Dir, "gdb-saves")).FullName;
        foreach (string a in new[] { dll, "gdbserver", guest.StreamPath, "--port", "0", "--once", "--save-dir", saveDir })
        {
            psi.ArgumentList.Add(a);
        }

        using Process server = Process.Start(psi)!;
        try
        {
            string line = await server.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60)) ?? string.Empty;
            Match port = Regex.Match(line, @"target remote 127\.0\.0\.1:(\d+)");
            Assert.True(port.Success, $"no port in \"{line}\"");
            Assert.Contains("(2 vCPUs as threads)", line, StringComparison.Ordinal);
            (int code, string output) = GdbBatch.RunWith("gdb-multiarch", string.Empty,
                $"target remote 127.0.0.1:{port.Groups[1].Value}",
                "info registers pc sp TTBR1_EL1",
                $"x/s 0x{banner:x}",
                "bt",
                $"set {{char}}0x{banner:x} = 'X'",
                $"x/s 0x{banner:x}",
                "thread 2",
                "info registers pc sp",
                "set $x5 = 0xabcdef",
                "set $TPIDRRO_EL0 = 0x1234",
                "set $SP_EL0 = 0x5678",
                "info registers x5 TPIDRRO_EL0 SP_EL0",
                "monitor save from-gdb.mig",
                "detach");
            Assert.True(code == 0, output);
            Assert.True(server.WaitForExit(30_000), "gdbserver did not exit after the connection ended");

            // QEMU's own values (HMP info registers of the paused guest) for both vCPUs.
            string[] sections = output.Split("[Switching to thread 2", 2);
            Assert.Equal(2, sections.Length);
            for (int cpu = 0; cpu < 2; cpu++)
            {
                Assert.Matches($@"(?m)^pc\s+0x{guest.Registers[cpu]["PC"]:x}\b", sections[cpu]);
                Assert.Matches($@"(?m)^sp\s+0x{guest.Registers[cpu]["SP"]:x}\b", sections[cpu]);
            }

            Assert.Matches($@"(?m)^TTBR1_EL1\s+0x{ttbr1:x}\b", sections[0]);

            // The banner read by virtual address through TTBR1_EL1 is what vmstate read gives; a write goes to the overlay.
            Assert.Contains($"0x{banner:x}:\t\"{bannerText}", output, StringComparison.Ordinal);
            Assert.Contains($"0x{banner:x}:\t\"X{bannerText[1..]}", output, StringComparison.Ordinal);
            // gdb pads a frame's address to 16 digits when vCPU 0 stopped in user space (no symbols there).
            Assert.Matches($@"(?m)^#0  0x0*{guest.Registers[0]["PC"]:x} in \?\? \(\)", sections[0]);

            // Register writes (P packets) of a general, a system and a banked register of vCPU 1 read back at once and
            // are in the snapshot `monitor save` wrote; vCPU 0 and the other registers are as they were.
            Assert.Matches(@"(?m)^x5\s+0xabcdef\b", sections[1]);
            Assert.Matches(@"(?m)^TPIDRRO_EL0\s+0x1234\b", sections[1]);
            Assert.Matches(@"(?m)^SP_EL0\s+0x5678\b", sections[1]);
            Assert.Contains("saved ", sections[1], StringComparison.Ordinal);
            using MachineState original = SnapshotLoader.Open(guest.StreamPath);
            using MachineState saved = SnapshotLoader.Open(Path.Combine(saveDir, "from-gdb.mig"));
            Assert.Equal(0xabcdefUL, saved.Arm64Cpus[1].X[5]);
            Assert.Equal(0x1234UL, saved.Arm64Cpus[1].SystemRegister(Arch.Arm64.Arm64SystemRegisters.TpidrroEl0));
            Assert.Equal(0x5678UL, saved.Arm64Cpus[1].SpEl[0]);
            Assert.Equal(original.Arm64Cpus[1].X.Where((_, i) => i != 5), saved.Arm64Cpus[1].X.Where((_, i) => i != 5));
            Assert.Equal(original.Arm64Cpus[1].Pc, saved.Arm64Cpus[1].Pc);
            Assert.Equal(original.Arm64Cpus[0].X, saved.Arm64Cpus[0].X);
            Assert.Equal(original.Arm64Cpus[0].SystemRegister(Arch.Arm64.Arm64SystemRegisters.TpidrroEl0), saved.Arm64Cpus[0].SystemRegister(Arch.Arm64.Arm64SystemRegisters.TpidrroEl0));
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
    public async Task Live_attach_reads_the_running_aarch64_guest_and_leaves_it_running()
    {
        QemuGuest running = guest.Running ?? throw new InvalidOperationException("the arm64 fixture guest is not running");
        string qmp = running.ToolQmpPath;

        (int code, string stdout, string stderr) = VmStateCli.Run(["info", "--qmp", qmp, "--json"]);
        Assert.True(code == 0, stderr);
        using (JsonDocument info = JsonDocument.Parse(stdout))
        {
            JsonElement cpus = info.RootElement.GetProperty("cpus");
            Assert.Equal(2, cpus.GetArrayLength());
            Assert.Equal("aarch64", cpus[0].GetProperty("architecture").GetString());
            Assert.Equal("EL1h", cpus[1].GetProperty("mode").GetString());
            Assert.StartsWith("0x", cpus[0].GetProperty("systemRegisters").GetProperty("TCR_EL1").GetString(), StringComparison.Ordinal);
        }

        // ps: the guest's own process truth, as for the snapshot.
        (code, stdout, stderr) = VmStateCli.Run(["ps", "--qmp", qmp, "--json"]);
        Assert.True(code == 0, stderr);
        using (JsonDocument ps = JsonDocument.Parse(stdout))
        {
            var byPid = ps.RootElement.GetProperty("processes").EnumerateArray().ToDictionary(p => p.GetProperty("pid").GetInt32());
            foreach (GroundTruth.Process want in guest.Truth.Processes)
            {
                Assert.True(byPid.TryGetValue(want.Pid, out JsonElement got), $"pid {want.Pid} ({want.Comm}) is missing");
                Assert.Equal(
                    (want.Ppid, want.Uid, want.Gid, want.Comm, want.Threads),
                    (got.GetProperty("ppid").GetInt32(), got.GetProperty("uid").GetInt32(), got.GetProperty("gid").GetInt32(), got.GetProperty("comm").GetString(), got.GetProperty("threads").GetInt32()));
            }
        }

        (code, stdout, stderr) = VmStateCli.Run(["dmesg", "--qmp", qmp]);
        Assert.True(code == 0, stderr);
        Assert.Contains($"] {guest.Truth.DmesgMarker}\n", stdout, StringComparison.Ordinal);
        Assert.Contains("] VMSTATE-KTICK ", stdout, StringComparison.Ordinal);

        (code, stdout, stderr) = VmStateCli.Run(["kernel-info", "--qmp", qmp]);
        Assert.True(code == 0, stderr);
        Assert.Contains($"Linux {guest.Truth.KernelVersion}\n", stdout, StringComparison.Ordinal);
        Assert.Contains("init_task at 0x", stdout, StringComparison.Ordinal);

        (code, stdout, stderr) = VmStateCli.Run(["read", "--qmp", qmp, "--sym", "linux_banner", "32", "-f", "raw"]);
        Assert.True(code == 0, stderr);
        Assert.Equal(guest.Truth.Lines.First(l => l.Key == "banner").Text[..32], stdout);

        // Still running, the gdbstub the registers came through stopped again, and the guest goes on ticking.
        Assert.Equal("running", await QemuMonitor.QueryStatusAsync(running.Qmp));
        JsonElement chardevs = await running.Qmp.ExecuteAsync("query-chardev");
        Assert.DoesNotContain(chardevs.EnumerateArray(), c => c.GetProperty("label").GetString() == "gdb");
        int lines = running.SerialLineCount;
        await running.WaitForSerialLineAsync(l => l.StartsWith("VMSTATE-TICK ", StringComparison.Ordinal), TimeSpan.FromSeconds(60), lines);

        // A stub the user started on a UNIX socket is used as it is (the chardev parsed as the tracer parses it): the
        // system registers come through it, with no warning, it stays, and the guest runs on.
        string socket = Path.Combine(guest.Dir, "user-gdb.sock");
        Assert.Contains("Waiting for gdb connection", await running.Qmp.HumanMonitorCommandAsync($"gdbserver unix:{socket},server=on,wait=off"), StringComparison.Ordinal);
        try
        {
            (code, stdout, stderr) = VmStateCli.Run(["info", "--qmp", qmp, "--json"]);
            Assert.True(code == 0, stderr);
            Assert.DoesNotContain("could not be read", stdout + stderr, StringComparison.Ordinal);
            using (JsonDocument info = JsonDocument.Parse(stdout))
            {
                Assert.StartsWith("0x", info.RootElement.GetProperty("cpus")[1].GetProperty("systemRegisters").GetProperty("TTBR1_EL1").GetString(), StringComparison.Ordinal);
            }

            Assert.Equal("running", await QemuMonitor.QueryStatusAsync(running.Qmp));
            chardevs = await running.Qmp.ExecuteAsync("query-chardev");
            Assert.Contains(chardevs.EnumerateArray(), c => c.GetProperty("label").GetString() == "gdb" && c.GetProperty("filename").GetString()!.StartsWith($"disconnected:unix:{socket}", StringComparison.Ordinal));
        }
        finally
        {
            await running.Qmp.HumanMonitorCommandAsync("gdbserver none");
        }
    }
}
