using VmState.Formats.Migration.Devices;
using VmState.IO;
using VmState.Machine;
using VmState.Memory;

namespace VmState.Formats.Migration;

/// <summary>Turns a migration stream into a <see cref="MachineState"/>: RAM mapped by machine rules, vCPUs, devices.</summary>
public static class MigrationMachineReader
{
    /// <summary>
    /// Parses the migration stream file in <paramref name="source"/> and builds the machine state; the state owns the
    /// source and its origin is a <see cref="MigrationStreamOrigin"/> of kind <see cref="MachineOriginKind.MigrationStream"/>.
    /// </summary>
    public static MachineState Read(IRandomAccessSource source, string sourcePath, ReaderLimits? limits = null, IProgress<double>? progress = null, IReadOnlyList<string>? mainRam = null, IRamStreamObserver? ram = null) =>
        Read(source, stream => new MigrationStreamOrigin(MachineOriginKind.MigrationStream, sourcePath, "migration stream", stream), limits, progress, mainRam, ram);

    /// <summary>
    /// Parses the stream in <paramref name="source"/> and builds the machine state with the origin
    /// <paramref name="origin"/> makes of the parsed stream (a stream inside a <c>virsh save</c> file or a qcow2
    /// snapshot); the state owns the source. <paramref name="ram"/>, when given, sees every RAM page record as the
    /// parse meets it (<see cref="MigrationStreamReader.Read(IRandomAccessSource, ReaderLimits?, IProgress{double}?, bool, IRamStreamObserver?)"/>).
    /// </summary>
    public static MachineState Read(IRandomAccessSource source, Func<MigrationStream, MigrationStreamOrigin> origin, ReaderLimits? limits = null, IProgress<double>? progress = null, IReadOnlyList<string>? mainRam = null, IRamStreamObserver? ram = null) =>
        Read(source, origin, limits, progress, mainRam, ram, ramIndex: null);

    /// <summary>
    /// <see cref="Read(IRandomAccessSource, Func{MigrationStream, MigrationStreamOrigin}, ReaderLimits?, IProgress{double}?, IReadOnlyList{string}?, IRamStreamObserver?)"/>
    /// with a cached RAM index of the same stream (null parses every page record).
    /// </summary>
    /// <exception cref="RamIndexMismatchException">The index does not fit the stream; the source was not disposed.</exception>
    internal static MachineState Read(IRandomAccessSource source, Func<MigrationStream, MigrationStreamOrigin> origin, ReaderLimits? limits, IProgress<double>? progress, IReadOnlyList<string>? mainRam, IRamStreamObserver? ram, RamIndexRecord? ramIndex)
    {
        ArgumentNullException.ThrowIfNull(origin);
        MigrationStream stream = MigrationStreamReader.Read(source, limits, progress, ownsSource: true, ram, ramIndex);
        try
        {
            return FromStream(origin(stream), mainRam);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Builds the machine state of the stream parsed in <paramref name="origin"/>; the state owns the stream.</summary>
    /// <param name="origin">The parsed stream and where it came from.</param>
    /// <param name="mainRam">The main RAM blocks in NUMA node order when the caller knows them (see <see cref="X86MainRam"/>); null to work them out.</param>
    /// <exception cref="VmStateFormatException">Main RAM cannot be told from the stream and <paramref name="mainRam"/> was not given.</exception>
    public static MachineState FromStream(MigrationStreamOrigin origin, IReadOnlyList<string>? mainRam = null)
    {
        ArgumentNullException.ThrowIfNull(origin);
        MigrationStream stream = origin.Stream;
        var warnings = new List<string>(stream.Warnings);
        if (Arm64CpuSectionDecoder.IsArm(stream.Devices))
        {
            IReadOnlyList<RamBlockInfo> armMapped = Arm64VirtLayout.Map(stream.MachineType, stream.RamBlocks, warnings, mainRam);
            var armMemory = new MigrationRamMemory(stream.Source, stream.RamBlocks, armMapped, stream.PageSize);
            IReadOnlyList<Arch.Arm64.Arm64CpuState> armCpus = Arm64CpuSectionDecoder.Decode(stream.Devices);
            WellKnownDevices.Annotate(stream.Devices);
            return new MachineState(origin, stream.MachineType, armMemory, [], stream.Devices, armMapped, warnings, stream) { Arm64Cpus = armCpus };
        }

        IReadOnlyList<RamBlockInfo> mapped = X86MachineLayout.Map(stream.MachineType, stream.RamBlocks, stream.Devices, warnings, mainRam);
        var memory = new MigrationRamMemory(stream.Source, stream.RamBlocks, mapped, stream.PageSize);
        var cpus = X86CpuSectionDecoder.Decode(stream.Devices);
        if (cpus.Count == 0 && stream.Devices.Count > 0)
        {
            warnings.Add("no \"cpu\" sections were found");
        }

        WellKnownDevices.Annotate(stream.Devices);
        return new MachineState(origin, stream.MachineType, memory, cpus, stream.Devices, mapped, warnings, stream);
    }
}
