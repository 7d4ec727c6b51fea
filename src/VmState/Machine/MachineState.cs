using VmState.Arch.X86;
using VmState.Memory;

namespace VmState.Machine;

/// <summary>
/// The one model every reader produces and every writer consumes: guest-physical memory, one
/// <see cref="X86CpuState"/> per vCPU and the device sections.
/// </summary>
public sealed class MachineState : IDisposable
{
    private readonly IDisposable? _owned;

    /// <summary>Creates the state; <paramref name="owned"/> is disposed with it (the open input).</summary>
    public MachineState(string sourcePath, string sourceFormat, string? machineType, IPhysicalMemory memory,
        IReadOnlyList<X86CpuState> cpus, IReadOnlyList<DeviceState> devices, IReadOnlyList<RamBlockInfo> ramBlocks,
        IReadOnlyList<string> warnings, IDisposable? owned)
    {
        SourcePath = sourcePath;
        SourceFormat = sourceFormat;
        MachineType = machineType;
        Memory = memory;
        Cpus = cpus;
        Devices = devices;
        RamBlocks = ramBlocks;
        Warnings = warnings;
        _owned = owned;
    }

    /// <summary>The file the state was read from.</summary>
    public string SourcePath { get; }

    /// <summary>What kind of input it was ("migration stream", "qcow2 snapshot 'name'", "ELF core", "raw image").</summary>
    public string SourceFormat { get; }

    /// <summary>QEMU machine type (e.g. "pc-i440fx-7.2"), when the input records it.</summary>
    public string? MachineType { get; }

    /// <summary>Guest-physical memory.</summary>
    public IPhysicalMemory Memory { get; }

    /// <summary>vCPUs ordered by index.</summary>
    public IReadOnlyList<X86CpuState> Cpus { get; }

    /// <summary>Device sections (empty for inputs that carry none, such as ELF cores).</summary>
    public IReadOnlyList<DeviceState> Devices { get; }

    /// <summary>RAM blocks and their mappings.</summary>
    public IReadOnlyList<RamBlockInfo> RamBlocks { get; }

    /// <summary>Non-fatal observations made while reading.</summary>
    public IReadOnlyList<string> Warnings { get; }

    /// <summary>The parsed migration stream behind this state, when the input was one (for writers that patch it).</summary>
    public Formats.Migration.MigrationStream? Stream { get; init; }

    /// <summary>For a qcow2 input: the id of the internal snapshot that was read; otherwise null.</summary>
    public string? Qcow2SnapshotId { get; init; }

    /// <summary>The notes of an ELF core input (per-vCPU NT_PRSTATUS and QEMU notes, VMCOREINFO), or null.</summary>
    public IReadOnlyList<Formats.Elf.ElfNote>? ElfNotes { get; init; }

    /// <summary>A VMCOREINFO note carried by the input itself (ELF cores), or null.</summary>
    public byte[]? VmcoreinfoNote { get; init; }

    /// <summary>The same state, marked as read from qcow2 snapshot <paramref name="id"/>.</summary>
    public MachineState WithQcow2Snapshot(string id) =>
        new(SourcePath, SourceFormat, MachineType, Memory, Cpus, Devices, RamBlocks, Warnings, _owned)
        {
            Stream = Stream,
            ElfNotes = ElfNotes,
            VmcoreinfoNote = VmcoreinfoNote,
            Qcow2SnapshotId = id,
        };

    /// <summary>The first device with <paramref name="idStr"/> and <paramref name="instanceId"/>, or null.</summary>
    public DeviceState? FindDevice(string idStr, int instanceId = 0)
    {
        foreach (DeviceState d in Devices)
        {
            if (d.IdStr == idStr && d.InstanceId == instanceId)
            {
                return d;
            }
        }

        return null;
    }

    /// <inheritdoc />
    public void Dispose() => _owned?.Dispose();
}
