using VmState.IO;
using VmState.Machine;

namespace VmState.Formats.Migration;

/// <summary>A parsed QEMU migration stream: configuration, RAM blocks with their page index, and device sections.</summary>
public sealed class MigrationStream : IDisposable
{
    internal MigrationStream(IRandomAccessSource source, string? machineType, IReadOnlyList<string> capabilities,
        IReadOnlyList<RamBlock> ramBlocks, IReadOnlyList<DeviceState> devices, VmDescription? description,
        long vmDescriptionOffset, IReadOnlyList<string> warnings, int pageSize, bool ownsSource)
    {
        Source = source;
        MachineType = machineType;
        Capabilities = capabilities;
        RamBlocks = ramBlocks;
        Devices = devices;
        Description = description;
        VmDescriptionOffset = vmDescriptionOffset;
        Warnings = warnings;
        PageSize = pageSize;
        _ownsSource = ownsSource;
    }

    private readonly bool _ownsSource;

    /// <summary>The bytes of the stream.</summary>
    public IRandomAccessSource Source { get; }

    /// <summary>Machine type from the configuration section (e.g. "pc-i440fx-7.2"), or null when absent.</summary>
    public string? MachineType { get; }

    /// <summary>Migration capabilities named in the configuration section (e.g. "x-ignore-shared").</summary>
    public IReadOnlyList<string> Capabilities { get; }

    /// <summary>RAM blocks in the order of the MEM_SIZE list.</summary>
    public IReadOnlyList<RamBlock> RamBlocks { get; }

    /// <summary>Device sections in stream order.</summary>
    public IReadOnlyList<DeviceState> Devices { get; }

    /// <summary>The trailing JSON VM description, or null when the stream has none.</summary>
    internal VmDescription? Description { get; }

    /// <summary>Offset of the 0x06 byte that starts the VM description, or -1.</summary>
    public long VmDescriptionOffset { get; }

    /// <summary>Non-fatal observations (e.g. a background snapshot without an END ram section).</summary>
    public IReadOnlyList<string> Warnings { get; }

    /// <summary>
    /// Offset of the EOS record that ends the last RAM chunk (-1 without RAM): new page records can be inserted
    /// before it without changing what CONTINUE records refer to, since no page record follows it.
    /// </summary>
    public long LastRamEosOffset { get; init; } = -1;

    /// <summary>
    /// True when the RAM page index came from a cached index of an earlier parse of the same file (see
    /// <see cref="Snapshots.IndexCache"/>) instead of reading every page record.
    /// </summary>
    public bool RamIndexFromCache { get; init; }

    /// <summary>Where each RAM chunk of the stream is (what a cached index needs to skip them).</summary>
    internal IReadOnlyList<RamChunkSpan> RamChunks { get; init; } = [];

    /// <summary>Target page size.</summary>
    public int PageSize { get; }

    /// <summary>The first device section with <paramref name="idStr"/> and <paramref name="instanceId"/>, or null.</summary>
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
    public void Dispose()
    {
        if (_ownsSource)
        {
            Source.Dispose();
        }
    }
}
