using VmState.Formats.Migration.Devices;
using VmState.IO;
using VmState.Machine;

namespace VmState.Formats.Migration;

/// <summary>Turns a migration stream into a <see cref="MachineState"/>: RAM mapped by machine rules, vCPUs, devices.</summary>
public static class MigrationMachineReader
{
    /// <summary>Parses the stream in <paramref name="source"/> and builds the machine state; the state owns the source.</summary>
    /// <param name="source">The stream's bytes.</param>
    /// <param name="sourcePath">The file it came from (for messages).</param>
    /// <param name="format">What kind of input it was (for messages).</param>
    /// <param name="limits">Limits on counts read from the stream.</param>
    /// <param name="progress">Progress of the parse (0..1).</param>
    /// <param name="mainRam">The main RAM blocks in NUMA node order when the caller knows them (see <see cref="X86MainRam"/>); null to work them out.</param>
    public static MachineState Read(IRandomAccessSource source, string sourcePath, string format, ReaderLimits? limits = null, IProgress<double>? progress = null, IReadOnlyList<string>? mainRam = null)
    {
        MigrationStream stream = MigrationStreamReader.Read(source, limits, progress, ownsSource: true);
        try
        {
            return FromStream(stream, sourcePath, format, mainRam);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Builds the machine state of a parsed stream; the state owns the stream.</summary>
    /// <exception cref="VmStateFormatException">Main RAM cannot be told from the stream and <paramref name="mainRam"/> was not given.</exception>
    public static MachineState FromStream(MigrationStream stream, string sourcePath, string format, IReadOnlyList<string>? mainRam = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var warnings = new List<string>(stream.Warnings);
        IReadOnlyList<RamBlockInfo> mapped = X86MachineLayout.Map(stream.MachineType, stream.RamBlocks, stream.Devices, warnings, mainRam);
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
