using VmState.Integration.Harness;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;

namespace VmState.Integration;

/// <summary>The q35 machine: PCIe config spaces, its own below-4G rule; RAM must still equal QEMU's dump.</summary>
public sealed class Q35ExtractTests
{
    [Fact]
    public async Task RamMacsAndRegistersMatchQemuOnQ35()
    {
        string dir = Directory.CreateTempSubdirectory("vmstate-q35-").FullName;
        try
        {
            GroundTruth truth;
            IReadOnlyList<VcpuRegisters> registers;
            await using (QemuGuest guest = await QemuGuest.StartAsync(new QemuGuestOptions { Machine = "q35" }))
            {
                await guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
                truth = guest.Truth;
                await guest.PauseAsync();
                registers = await guest.InfoRegistersAsync();
                await guest.DumpGuestMemoryAsync(Path.Combine(dir, "qemu.elf"));
                await guest.MigrateToFileAsync(Path.Combine(dir, "q35.mig"));
            }

            using MachineState m = SnapshotLoader.Open(Path.Combine(dir, "q35.mig"));
            using MachineState qemu = SnapshotLoader.Open(Path.Combine(dir, "qemu.elf"));
            Assert.StartsWith("pc-q35", m.MachineType, StringComparison.Ordinal);
            RamAssert.Equal(qemu.Memory, m.Memory);

            Assert.Equal(truth.Nics.Single(n => n.Driver == "virtio_net").Mac, m.Devices.Single(d => d.IdStr.EndsWith("/virtio-net", StringComparison.Ordinal)).Decoded["mac"]);
            Assert.Equal(truth.Nics.Single(n => n.Driver == "e1000").Mac, m.Devices.Single(d => d.IdStr.EndsWith("/e1000", StringComparison.Ordinal)).Decoded["mac"]);
            Assert.Equal(registers.Select(r => r.Cr3), m.Cpus.Select(c => c.Cr3));
            Assert.Equal(registers.Select(r => r.Rip), m.Cpus.Select(c => c.Rip));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
