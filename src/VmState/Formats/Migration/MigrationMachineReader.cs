using VmState.Formats.Migration.Devices;
using VmState.IO;
using VmState.Machine;

namespace VmState.Formats.Migration;

/// <summary>Turns a migration stream into a <see cref="MachineState"/>: RAM mapped by machine rules, vCPUs, devices.</summary>
public static class MigrationMachineReader
{
    /// <summary>Parses the stream in <paramref name="source"/> and builds the machine state; the state owns the source.</summary>
    public static MachineState Read(IRandomAccessSource source, string sourcePath, string format, ReaderLimits? limits = null, IProgress<double>? progress = null)
    {
        MigrationStream stream = MigrationStreamReader.Read(source, limits, progress, ownsSource: true);
        try
        {
            return FromStream(stream, sourcePath, format);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Builds the machine state of a parsed stream; the state owns the stream.</summary>
    public static MachineState FromStream(MigrationStream stream, string sourcePath, string format)
    {
        var warnings = new List<string>(stream.Warnings);
        IReadOnlyList<RamBlockInfo> mapped = X86MachineLayout.Map(stream.MachineType, stream.RamBlocks, stream.Devices, warnings);
        var memory = new MigrationRamMemory(stream.Source, stream.RamBlocks, mapped, stream.PageSize);
        var cpus = X86CpuSectionDecoder.Decode(stream.Devices);
        if (cpus.Count == 0 && stream.Devices.Count > 0)
        {
            warnings.Add("no \"cpu\" sections were found");
        }

        WellKnownDevices.Annotate(stream.Devices);
        return new MachineState(sourcePath, format, stream.MachineType, memory, cpus, stream.Devices, mapped, warnings, stream)
        {
            Stream = stream,
        };
    }
}
