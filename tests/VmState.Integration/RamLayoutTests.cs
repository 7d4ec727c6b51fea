using System.Text.Json;
using VmState.Integration.Harness;
using VmState.Live;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;

namespace VmState.Integration;

/// <summary>
/// Guest RAM on memory backends (how libvirt configures it): the machine's RAM named by its backend, NUMA nodes
/// concatenated in node order, memfd and file backends, on pc and q35. Each layout is checked against QEMU's own
/// dump-guest-memory of the same paused guest, and the guest's processes must be found in it.
/// </summary>
public sealed class RamLayoutTests
{
    private sealed record Captured(string Dir, GroundTruth Truth, string Stream, string Dump);

    /// <summary>Boots the fixture guest, pauses it, dumps it with QEMU, runs <paramref name="whilePaused"/>, migrates it to a file.</summary>
    private static async Task<Captured> CaptureAsync(string dir, QemuGuestOptions options, Func<QemuGuest, Task>? whilePaused = null)
    {
        await using QemuGuest guest = await QemuGuest.StartAsync(options);
        await guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
        GroundTruth truth = guest.Truth;
        await guest.PauseAsync();
        var captured = new Captured(dir, truth, Path.Combine(dir, "guest.mig"), Path.Combine(dir, "qemu.elf"));
        await guest.DumpGuestMemoryAsync(captured.Dump);
        if (whilePaused is not null)
        {
            await whilePaused(guest);
        }

        await guest.MigrateToFileAsync(captured.Stream);
        return captured;
    }

    /// <summary>
    /// `vmstate extract` writes a core whose RAM is QEMU's dump byte for byte, and `vmstate ps` lists the marker
    /// process; <paramref name="extra"/> are more options for both.
    /// </summary>
    private static void AssertExtractAndPs(Captured c, params string[] extra)
    {
        string outDir = Path.Combine(c.Dir, "out");
        (int code, string stdout, string stderr) = VmStateCli.Run(["extract", c.Stream, "-o", outDir, .. extra]);
        Assert.True(code == 0, $"vmstate extract failed ({code}): {stderr}");
        using (MachineState core = SnapshotLoader.Open(Path.Combine(outDir, "core.elf")))
        using (MachineState qemu = SnapshotLoader.Open(c.Dump))
        {
            RamAssert.Equal(qemu.Memory, core.Memory);
        }

        (code, stdout, stderr) = VmStateCli.Run(["ps", c.Stream, "--json", .. extra]);
        Assert.True(code == 0, $"vmstate ps failed ({code}): {stderr}");
        using JsonDocument doc = JsonDocument.Parse(stdout);
        JsonElement list = doc.RootElement.ValueKind == JsonValueKind.Array ? doc.RootElement : doc.RootElement.GetProperty("processes");
        Assert.Contains(list.EnumerateArray(), p => p.GetProperty("pid").GetInt32() == c.Truth.Marker!.Pid);
    }

    private static async Task InDirectoryAsync(string prefix, Func<string, Task> body)
    {
        string dir = Directory.CreateTempSubdirectory(prefix).FullName;
        try
        {
            await body(dir);
        }
        finally
        {
            if (Environment.GetEnvironmentVariable("VMSTATE_KEEP_WORK") != "1")
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }

    [Fact]
    public Task Q35MachineMemoryBackendIsMappedAsMainRam() => InDirectoryAsync("vmstate-ramlayout-q35-", async dir =>
    {
        // The reported case: -machine q35,memory-backend=m0 -object memory-backend-ram,id=m0 (RAMBlock "m0").
        Captured c = await CaptureAsync(dir, new QemuGuestOptions
        {
            Machine = "q35",
            ExtraArgs = ["-object", "memory-backend-ram,id=m0,size=512M", "-machine", "memory-backend=m0"],
        });
        using (MachineState m = SnapshotLoader.Open(c.Stream))
        using (MachineState qemu = SnapshotLoader.Open(c.Dump))
        {
            Assert.Contains("m0", m.RamBlocks.Select(b => b.Name));
            Assert.DoesNotContain("pc.ram", m.RamBlocks.Select(b => b.Name));
            Assert.NotEmpty(m.RamBlocks.Single(b => b.Name == "m0").Mappings);
            RamAssert.Equal(qemu.Memory, m.Memory);
        }

        AssertExtractAndPs(c);
    });

    [Fact]
    public Task LibvirtNumaNodesOnRamAndMemfdAreConcatenatedInNodeOrder() => InDirectoryAsync("vmstate-ramlayout-numa-", async dir =>
    {
        // libvirt's ids; node 1 is the bigger one, so QEMU lists it first in the stream (blocks go by size).
        IReadOnlyList<string> liveMainRam = [];
        Captured c = await CaptureAsync(
            dir,
            new QemuGuestOptions
            {
                Machine = "pc",
                ExtraArgs =
                [
                    "-object", "memory-backend-ram,id=ram-node0,size=128M",
                    "-object", "memory-backend-memfd,id=ram-node1,size=384M",
                    "-numa", "node,nodeid=0,cpus=0,memdev=ram-node0",
                    "-numa", "node,nodeid=1,cpus=1,memdev=ram-node1",
                ],
            },
            async guest =>
            {
                // The live path maps backend-named RAM from QEMU's flat view: the same bytes as QEMU's dump.
                await using Vm vm = await Vm.AttachAsync(guest.ToolQmpPath);
                liveMainRam = await vm.Live!.ReadMainRamAsync();
                using MachineState qemu = SnapshotLoader.Open(Path.Combine(dir, "qemu.elf"));
                RamAssert.Covers(qemu.Memory, vm.Machine.Memory);
            });

        Assert.Equal(["ram-node0", "ram-node1"], liveMainRam);
        using (MachineState m = SnapshotLoader.Open(c.Stream))
        using (MachineState qemu = SnapshotLoader.Open(c.Dump))
        {
            Assert.Equal(["ram-node1", "ram-node0"], m.RamBlocks.Take(2).Select(b => b.Name));
            Assert.Equal(128UL << 20, m.RamBlocks.Single(b => b.Name == "ram-node1").Mappings.Single().GuestPhysicalAddress);
            RamAssert.Equal(qemu.Memory, m.Memory);
        }

        AssertExtractAndPs(c);
    });

    [Fact]
    public Task SharedFileBackendNodesWithoutAnOrderAreRefusedUntilTheOptionOrQmpGivesIt() => InDirectoryAsync("vmstate-ramlayout-file-", async dir =>
    {
        // Node 0 is a shared file in a temporary directory, node 1 plain RAM; the ids do not number the nodes, so
        // the snapshot alone cannot say which comes first.
        IReadOnlyList<string> liveMainRam = [];
        Captured c = await CaptureAsync(
            dir,
            new QemuGuestOptions
            {
                Machine = "pc",
                ExtraArgs =
                [
                    "-object", $"memory-backend-file,id=guestfile,size=192M,mem-path={Path.Combine(dir, "guest-ram")},share=on",
                    "-object", "memory-backend-ram,id=anon,size=320M",
                    "-numa", "node,nodeid=0,cpus=0,memdev=guestfile",
                    "-numa", "node,nodeid=1,cpus=1,memdev=anon",
                ],
            },
            async guest =>
            {
                await using LiveMachine live = await LiveMachine.AttachAsync(guest.ToolQmpPath);
                liveMainRam = await live.ReadMainRamAsync();
            });

        foreach (string[] command in new[] { new[] { "info", c.Stream }, ["extract", c.Stream, "-o", Path.Combine(dir, "refused")], ["ps", c.Stream] })
        {
            (int code, _, string stderr) = VmStateCli.Run(command);
            Assert.True(code == 2, $"vmstate {command[0]} exited {code}: {stderr}");
            Assert.Contains("--main-ram", stderr, StringComparison.Ordinal);
            Assert.Contains("\"guestfile\"", stderr, StringComparison.Ordinal);
        }

        Assert.False(File.Exists(Path.Combine(dir, "refused", "core.elf")));

        // QMP gives the order of a running VM; it opens the snapshot as the CLI option does.
        Assert.Equal(["guestfile", "anon"], liveMainRam);
        using (MachineState m = SnapshotLoader.Open(c.Stream, new SnapshotOpenOptions { MainRam = liveMainRam }))
        using (MachineState qemu = SnapshotLoader.Open(c.Dump))
        {
            RamAssert.Equal(qemu.Memory, m.Memory);
        }

        AssertExtractAndPs(c, "--main-ram", "guestfile,anon");
    });
}
