using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using VmState.Integration.Harness;

namespace VmState.Integration;

/// <summary>
/// <c>vmstate agent</c>: the fixture guest asks for snapshots through guest/vmstate-trigger (kernel argument
/// vmstate.trigger=N: every N ticks, after printing "VMSTATE-TRIGGER-ASK N"), on a port the VM was started with and on
/// one the agent hot-plugs.
/// </summary>
public sealed class TriggerAgentTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-trigger-").FullName;

    public void Dispose()
    {
        if (Environment.GetEnvironmentVariable("VMSTATE_KEEP_WORK") != "1")
        {
            Directory.Delete(_dir, recursive: true);
        }
    }

    [Fact]
    public async Task ALaunchConfiguredPortGivesASnapshotInWhichTheRequesterWaitsInItsRead()
    {
        string socket = Path.Combine(_dir, "trigger.sock");
        var options = new QemuGuestOptions
        {
            MemoryMiB = 256,
            Cpus = 1,
            ExtraKernelArgs = "vmstate.trigger=2",
            ExtraArgs =
            [
                "-device", "virtio-serial-pci",
                "-chardev", $"socket,id=trig,path={socket},server=on,wait=off",
                "-device", "virtserialport,chardev=trig,name=org.vmstate.trigger.0,id=trigport",
            ],
        };
        await using QemuGuest guest = await QemuGuest.StartAsync(options);
        await guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));

        string output = Path.Combine(_dir, "snaps");
        (int code, string stdout, string stderr) = await RunAgentAsync(["agent", "--qmp", guest.ToolQmpPath, "-o", output, "--count", "1", "--json"]);
        Assert.True(code == 0, stderr);
        Assert.Contains("the VM's port /machine/peripheral/trigport", stderr, StringComparison.Ordinal);
        using JsonDocument result = JsonDocument.Parse(stdout.Trim());
        JsonElement snap = result.RootElement;
        Assert.Equal("trigger-0001", snap.GetProperty("id").GetString());
        Assert.Equal("paused", snap.GetProperty("mode").GetString());
        Assert.True(snap.GetProperty("stopLatencyMs").GetDouble() is > 0 and < 2000);

        // The guest printed the tick it asked at, then got the answer once the VM ran again.
        string label = snap.GetProperty("label").GetString()!;
        int tick = int.Parse(label["tick-".Length..], CultureInfo.InvariantCulture);
        Assert.Contains($"VMSTATE-TRIGGER-ASK {tick}", guest.SerialText, StringComparison.Ordinal);
        await guest.WaitForSerialLineAsync(l => l == $"VMSTATE-TRIGGER-OK {tick} trigger-0001", TimeSpan.FromSeconds(30));
        await guest.WaitForSerialLineAsync(l => l == $"VMSTATE-TICK {tick + 1}", TimeSpan.FromSeconds(30));

        string mig = Path.Combine(output, "trigger-0001.mig");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(mig));
        using (JsonDocument meta = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "trigger-0001.json"))))
        {
            Assert.Equal(label, meta.RootElement.GetProperty("label").GetString());
            Assert.Equal(snap.GetProperty("nonce").GetString(), meta.RootElement.GetProperty("nonce").GetString());
        }

        AssertRequesterWaitsInTheSnapshot(mig, tick, snap.GetProperty("nonce").GetString()!);
    }

    [Fact]
    public async Task AHotPluggedPortFeedsAStoreAndIsRemovedAfterwards()
    {
        var options = new QemuGuestOptions { MemoryMiB = 256, Cpus = 1, ExtraKernelArgs = "vmstate.trigger=2" };
        await using QemuGuest guest = await QemuGuest.StartAsync(options);
        await guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));

        // The guest has no such port yet: its requests fail until the agent hot-plugs one.
        await guest.WaitForSerialLineAsync(l => l.StartsWith("VMSTATE-TRIGGER-FAILED ", StringComparison.Ordinal), TimeSpan.FromSeconds(30));

        string store = Path.Combine(_dir, "store");
        (int code, string stdout, string stderr) = await RunAgentAsync(["agent", "--qmp", guest.ToolQmpPath, "--store", store, "--count", "1", "--json"]);
        Assert.True(code == 0, stderr);
        Assert.Contains("hot-plugged port vmstate-trigger-port on a hot-plugged virtio-serial-pci", stderr, StringComparison.Ordinal);
        using JsonDocument result = JsonDocument.Parse(stdout.Trim());
        Assert.Equal("@1", result.RootElement.GetProperty("id").GetString());
        string label = result.RootElement.GetProperty("label").GetString()!;
        int tick = int.Parse(label["tick-".Length..], CultureInfo.InvariantCulture);
        await guest.WaitForSerialLineAsync(l => l == $"VMSTATE-TRIGGER-OK {tick} @1", TimeSpan.FromSeconds(30));

        (code, stdout, stderr) = VmStateCli.Run(["history", "list", store, "--json"]);
        Assert.True(code == 0, stderr);
        Assert.Contains($"guest request \\u0022{label}\\u0022", stdout, StringComparison.Ordinal);
        AssertRequesterWaitsInTheSnapshot(store + "@1", tick, result.RootElement.GetProperty("nonce").GetString()!);

        // The port and its controller are gone again; the guest runs on (its next requests fail again).
        JsonElement devices = await guest.Qmp.ExecuteAsync("qom-list", new JsonObject { ["path"] = "/machine/peripheral" });
        Assert.DoesNotContain(devices.EnumerateArray(), d => d.GetProperty("name").GetString()!.StartsWith("vmstate-trigger", StringComparison.Ordinal));
        await guest.WaitForSerialLineAsync(l => l == $"VMSTATE-TICK {tick + 2}", TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task WithFreezeTheSnapshotHoldsTheGuestsDiskFilesystemFrozenAndTheGuestThawsAfterwards()
    {
        // An ext2 disk the fixture's /init mounts on /mnt/data, and qemu-ga on its port (the fixture starts it when the
        // port exists); the trigger port is hot-plugged onto the same virtio-serial controller.
        string disk = Path.Combine(_dir, "data.raw");
        using (var f = File.Create(disk))
        {
            f.SetLength(16 << 20);
        }

        using (var mkfs = Process.Start(new ProcessStartInfo("mkfs.ext2", ["-q", "-F", disk]) { RedirectStandardError = true })!)
        {
            await mkfs.WaitForExitAsync();
            Assert.True(mkfs.ExitCode == 0, await mkfs.StandardError.ReadToEndAsync());
        }

        var options = new QemuGuestOptions
        {
            MemoryMiB = 256,
            Cpus = 1,
            ExtraKernelArgs = "vmstate.trigger=2",
            ExtraArgs =
            [
                "-drive", $"file={disk},if=virtio,format=raw",
                "-device", "virtio-serial-pci",
                "-chardev", $"socket,id=qga,path={Path.Combine(_dir, "qga.sock")},server=on,wait=off",
                "-device", "virtserialport,chardev=qga,name=org.qemu.guest_agent.0",
            ],
        };
        await using QemuGuest guest = await QemuGuest.StartAsync(options);
        await guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
        Assert.Contains(guest.Truth.Processes, p => p.Comm == "qemu-ga");

        string output = Path.Combine(_dir, "frozen");
        (int code, string stdout, string stderr) = await RunAgentAsync(["agent", "--qmp", guest.ToolQmpPath, "-o", output, "--count", "1", "--freeze", "--json"]);
        Assert.True(code == 0, stderr);
        Assert.Contains("hot-plugged port vmstate-trigger-port on the VM's virtio-serial bus", stderr, StringComparison.Ordinal);
        Assert.Contains("filesystems frozen around each through the guest agent on", stderr, StringComparison.Ordinal);
        using JsonDocument result = JsonDocument.Parse(stdout.Trim());
        Assert.Equal(1, result.RootElement.GetProperty("frozenFilesystems").GetInt32());

        // In the snapshot: vda's super_block is frozen (s_writers.frozen == SB_FREEZE_COMPLETE, 4).
        using (VmState.Vm vm = VmState.Vm.Open(Path.Combine(output, "trigger-0001.mig")))
        {
            VmState.Linux.LinuxKernel kernel = vm.Linux.Kernel;
            VmState.Linux.KernelObject head = kernel.Object("super_blocks", "struct list_head");
            VmState.Linux.KernelObject vda = VmState.Linux.KernelList.ListForEachEntry(kernel, head, "struct super_block", "s_list")
                .Single(sb => sb.Member("s_id").ReadString() == "vda");
            Assert.Equal(4, vda.Member("s_writers.frozen").ToInt64());
        }

        // Afterwards the guest's filesystems are thawed (asked through qemu-ga ourselves).
        await using VmState.Live.GuestAgent qga = await VmState.Live.GuestAgent.ConnectAsync(guest.Qmp);
        Assert.Equal("thawed", await qga.FreezeStatusAsync());
    }

    /// <summary>
    /// In the snapshot the requester (the vmstate-trigger script) is asleep waiting for the answer — its saved user
    /// registers are in read(2), of the pipe from its helper (a command substitution, also named vmstate-trigger, its
    /// child), which holds the port — and the kernel log ends with the ASK line of its tick, before the next tick.
    /// </summary>
    private void AssertRequesterWaitsInTheSnapshot(string snapshot, int tick, string nonce)
    {
        (int code, string stdout, string stderr) = VmStateCli.Run(["ps", snapshot, "--json"]);
        Assert.True(code == 0, stderr);
        using JsonDocument ps = JsonDocument.Parse(stdout);

        // guest/vmstate-trigger's nonce is "<pid>-<time>", the pid the requesting shell's.
        string pid = nonce[..nonce.IndexOf('-', StringComparison.Ordinal)];
        JsonElement[] processes = ps.RootElement.GetProperty("processes").EnumerateArray().ToArray();
        JsonElement requester = processes.Single(p => p.GetProperty("pid").GetInt32().ToString(CultureInfo.InvariantCulture) == pid);
        Assert.Equal("vmstate-trigger", requester.GetProperty("comm").GetString());
        Assert.Equal("S", requester.GetProperty("state").GetString());
        JsonElement helper = Assert.Single(processes, p => p.GetProperty("ppid").GetInt32().ToString(CultureInfo.InvariantCulture) == pid);
        Assert.Equal("vmstate-trigger", helper.GetProperty("comm").GetString());

        string core = Path.Combine(_dir, $"requester-{Guid.NewGuid():N}.core");
        (code, _, stderr) = VmStateCli.Run(["procdump", snapshot, pid, "-o", core]);
        Assert.True(code == 0, stderr);
        // The saved registers show the system call (orig_rax 0: read) and its descriptor (rdi), which is not the
        // script's own input (0) but the substitution's pipe.
        (int gdb, string regs) = GdbBatch.Run(core, "p $orig_rax", "p $rdi");
        Assert.True(gdb == 0, regs);
        Assert.Contains("$1 = 0\n", regs, StringComparison.Ordinal);
        Assert.DoesNotContain("$2 = 0\n", regs, StringComparison.Ordinal);

        (code, stdout, stderr) = VmStateCli.Run(["dmesg", snapshot]);
        Assert.True(code == 0, stderr);
        string[] ours = stdout.Split('\n').Where(l => l.Contains("VMSTATE-", StringComparison.Ordinal)).ToArray();
        Assert.EndsWith($"VMSTATE-TRIGGER-ASK {tick}", ours[^1].TrimEnd(), StringComparison.Ordinal);
        Assert.DoesNotContain(ours, l => l.EndsWith($"VMSTATE-KTICK {tick + 1}", StringComparison.Ordinal));
    }

    private static async Task<(int Code, string Stdout, string Stderr)> RunAgentAsync(IEnumerable<string> args)
    {
        using Process agent = VmStateCli.StartBackground(args);
        Task<string> stdout = agent.StandardOutput.ReadToEndAsync();
        Task<string> stderr = agent.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        try
        {
            await agent.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            agent.Kill(entireProcessTree: true);
            Assert.Fail($"vmstate agent did not finish in 90 s: {await stderr}");
        }

        return (agent.ExitCode, await stdout, await stderr);
    }
}
