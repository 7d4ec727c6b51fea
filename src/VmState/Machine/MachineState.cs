using VmState.Arch;
using VmState.Arch.Arm64;
using VmState.Arch.X86;
using VmState.Memory;

namespace VmState.Machine;

/// <summary>
/// The one model every reader produces and every writer consumes: guest-physical memory, one
/// <see cref="X86CpuState"/> per vCPU and the device sections.
/// </summary>
public sealed class MachineState : IVcpuRegisters, IDeviceStates, IDisposable
{
    private readonly IDisposable? _owned;

    /// <summary>Creates the state; <paramref name="owned"/> is disposed with it (the open input).</summary>
    public MachineState(MachineOrigin origin, string? machineType, IPhysicalMemory memory,
        IReadOnlyList<X86CpuState> cpus, IReadOnlyList<DeviceState> devices, IReadOnlyList<RamBlockInfo> ramBlocks,
        IReadOnlyList<string> warnings, IDisposable? owned)
    {
        ArgumentNullException.ThrowIfNull(origin);
        Origin = origin;
        MachineType = machineType;
        Memory = memory;
        Cpus = cpus;
        Devices = devices;
        RamBlocks = ramBlocks;
        Warnings = warnings;
        _owned = owned;
    }

    /// <summary>
    /// Where the state came from: the kind of input, its path and description; a format's own origin type (derived
    /// from <see cref="MachineOrigin"/>) carries what that format's writers need.
    /// </summary>
    public MachineOrigin Origin { get; }

    /// <summary>The file the state was read from (<see cref="MachineOrigin.Path"/>).</summary>
    public string SourcePath => Origin.Path;

    /// <summary>QEMU machine type (e.g. "pc-i440fx-7.2"), when the input records it.</summary>
    public string? MachineType { get; }

    /// <summary>Guest-physical memory.</summary>
    public IPhysicalMemory Memory { get; }

    /// <summary>x86 vCPUs ordered by index (empty for an AArch64 guest: see <see cref="Arm64Cpus"/>).</summary>
    public IReadOnlyList<X86CpuState> Cpus { get; }

    /// <summary>AArch64 vCPUs ordered by index (empty for an x86 guest).</summary>
    public IReadOnlyList<Arm64CpuState> Arm64Cpus { get; init; } = [];

    /// <summary>The guest's CPU architecture: AArch64 when the input carries AArch64 vCPUs, else x86-64.</summary>
    public CpuArchitecture Architecture => Arm64Cpus.Count > 0 ? CpuArchitecture.Arm64 : CpuArchitecture.X86_64;

    /// <summary>Every vCPU ordered by index, whatever the architecture.</summary>
    public IReadOnlyList<IVcpuState> Vcpus => Arm64Cpus.Count > 0 ? Arm64Cpus : Cpus;

    /// <summary>Device sections (empty for inputs that carry none, such as ELF cores).</summary>
    public IReadOnlyList<DeviceState> Devices { get; }

    /// <summary>RAM blocks and their mappings.</summary>
    public IReadOnlyList<RamBlockInfo> RamBlocks { get; }

    /// <summary>Non-fatal observations made while reading.</summary>
    public IReadOnlyList<string> Warnings { get; }

    /// <summary>
    /// Where later layers may keep notes about this input between runs (the index cache, for large snapshot files
    /// opened with one), or null.
    /// </summary>
    public IMachineNotes? Notes { get; internal set; }

    /// <summary>The same state (sharing memory, vCPUs, devices, notes and the owned input) with another origin.</summary>
    public MachineState WithOrigin(MachineOrigin origin) =>
        new(origin, MachineType, Memory, Cpus, Devices, RamBlocks, Warnings, _owned) { Notes = Notes, Arm64Cpus = Arm64Cpus };

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
