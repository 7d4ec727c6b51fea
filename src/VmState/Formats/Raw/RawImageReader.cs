using VmState.IO;
using VmState.Machine;
using VmState.Memory;

namespace VmState.Formats.Raw;

/// <summary>A raw physical memory image: byte N of the file is guest-physical address N. No vCPUs, no devices.</summary>
public static class RawImageReader
{
    /// <summary>Wraps the source; the returned state owns it.</summary>
    public static MachineState Read(IRandomAccessSource source, string sourcePath)
    {
        var range = new MemoryRange(0, (ulong)source.Length, "raw");
        var memory = new FileRangeMemory(source, [(range, 0, (ulong)source.Length)]);
        return new MachineState(new MachineOrigin(MachineOriginKind.RawImage, sourcePath, "raw image"), null, memory, [], [],
            [new RamBlockInfo("raw", (ulong)source.Length, [new BlockMapping(0, 0, (ulong)source.Length)])],
            ["a raw image carries no vCPU or device state"], source);
    }
}
